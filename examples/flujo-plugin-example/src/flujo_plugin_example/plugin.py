"""The hooks of flujo-plugin-example (the module the ``flujo.plugins`` entry point names).

Flujo imports this module at startup, every time, whether or not the plugin's features are
used. So it imports nothing heavy: the policy, its settings model and the command live in
their own modules and are imported inside the functions below, only when needed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from flujo.plugin import hookimpl

if TYPE_CHECKING:
    import click
    from flujo.plugin import (
        FlujoConfig,
        Migration,
        RegisterEmbedders,
        RegisterEvaluators,
        RegisterPolicies,
        RegisterSandboxes,
        RegisterStateBackends,
        RegisterTools,
        RegisterVectorStores,
        RunRecord,
        Runtime,
        RunViewSection,
        StateBackend,
        StepStarted,
    )
    from pydantic import BaseModel

    from flujo_plugin_example.evaluator import CleanOutput
    from flujo_plugin_example.memory import DictVectorStore, TrigramEmbedder
    from flujo_plugin_example.policy import DenyWords
    from flujo_plugin_example.sandbox import BwrapSandbox
    from flujo_plugin_example.settings import ExampleSettings

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


def _create_dict_store(config: FlujoConfig) -> DictVectorStore:
    from flujo_plugin_example.memory import DictVectorStore

    return DictVectorStore()


def _create_trigram_embedder(config: FlujoConfig) -> TrigramEmbedder:
    from flujo_plugin_example.memory import TrigramEmbedder

    return TrigramEmbedder(_settings(config).dimension)


@hookimpl
def flujo_register_vector_stores(register: RegisterVectorStores) -> None:
    """``[memory] store = "example_dict"`` (with flujo-memory) keeps memories in the process."""
    register("example_dict", _create_dict_store)


@hookimpl
def flujo_register_embedders(register: RegisterEmbedders) -> None:
    """``[memory] embedder = "example_trigram"``: character trigrams, offline."""
    register("example_trigram", _create_trigram_embedder)


def _create_clean_output(config: FlujoConfig) -> CleanOutput:
    from flujo_plugin_example.evaluator import CleanOutput

    return CleanOutput(_create_deny_words(config))


@hookimpl
def flujo_register_evaluators(register: RegisterEvaluators) -> None:
    """``[eval] evaluators = ["example_clean_output"]`` (with flujo-evals)."""
    register("example_clean_output", _create_clean_output)


def _create_bwrap_sandbox(config: FlujoConfig) -> BwrapSandbox:
    from flujo_plugin_example.sandbox import BwrapSandbox

    return BwrapSandbox()


@hookimpl
def flujo_register_sandboxes(register: RegisterSandboxes) -> None:
    """``[sandbox] backend = "example_bwrap"`` (with flujo-sandbox), or
    ``flujo sandbox exec --backend example_bwrap``."""
    register("example_bwrap", _create_bwrap_sandbox)


def _create_word_count(config: FlujoConfig) -> Callable[..., object]:
    from flujo_plugin_example.tools import word_count

    return word_count


@hookimpl
def flujo_register_tools(register: RegisterTools) -> None:
    """``make_agent_async(..., tools=["example.word_count"])``; the model sees
    ``example__word_count``."""
    register("example.word_count", _create_word_count)


@hookimpl
def flujo_register_state_backends(register: RegisterStateBackends) -> None:
    """``[state] uri = "example-sqlite:///runs.db"`` keeps runs with this plugin's backend."""
    from flujo_plugin_example.state import SCHEME, example_sqlite

    register(SCHEME, example_sqlite)


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


def _settings(config: FlujoConfig) -> ExampleSettings:
    from flujo_plugin_example.settings import ExampleSettings

    return config.section(SECTION, ExampleSettings)


@hookimpl
def flujo_storage_migrations(dialect: str) -> Sequence[Migration]:
    """The step spans table."""
    from flujo_plugin_example.spans import migrations

    return migrations(dialect)


@hookimpl
def flujo_wrap_step(event: StepStarted, runtime: Runtime) -> AbstractContextManager[None] | None:
    """Time the step when ``[example] spans = true`` (``None``: do not wrap it)."""
    if not _settings(runtime.config).spans:
        return None
    from flujo_plugin_example.spans import step_span

    return step_span(event, runtime)


@hookimpl
def flujo_run_view(run: RunRecord, state: StateBackend) -> Awaitable[RunViewSection | None]:
    """The run's step spans, for ``flujo runs show``."""
    from flujo_plugin_example.spans import run_view

    return run_view(run, state)
