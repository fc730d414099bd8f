"""The hooks of flujo-plugin-example (the module the ``flujo.plugins`` entry point names).

Flujo imports this module at startup, every time, whether or not the plugin's features are
used. So it imports nothing heavy: the policy, its settings model and the command live in
their own modules and are imported inside the functions below, only when needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flujo.plugin import hookimpl

if TYPE_CHECKING:
    import click
    from flujo.plugin import FlujoConfig, RegisterPolicies
    from pydantic import BaseModel

    from flujo_plugin_example.policy import DenyWords

SECTION = "example"
"""The ``flujo.toml`` section this plugin owns: ``[example] words = [...]``."""


def _create_deny_words(config: FlujoConfig) -> DenyWords:
    """Factory of the ``deny_words`` policy; Flujo calls it only when the policy is used."""
    from flujo_plugin_example.policy import DenyWords
    from flujo_plugin_example.settings import ExampleSettings

    return DenyWords(config.section(SECTION, ExampleSettings).words)


@hookimpl
def flujo_register_policies(register: RegisterPolicies) -> None:
    register("deny_words", _create_deny_words)


@hookimpl
def flujo_config_sections() -> dict[str, type[BaseModel]]:
    from flujo_plugin_example.settings import ExampleSettings

    return {SECTION: ExampleSettings}


@hookimpl
def flujo_register_commands(cli: click.Group) -> None:
    from flujo.plugin import lazy_command

    cli.add_command(
        lazy_command(
            "example-hello",
            "flujo_plugin_example.commands:hello",
            help="Print a greeting (from flujo-plugin-example).",
        )
    )
