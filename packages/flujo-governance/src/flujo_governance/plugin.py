"""The hooks of flujo-governance (the module the ``flujo.plugins`` entry point names).

Imported at every ``flujo`` startup: it imports nothing heavy. Policies, settings, the audit
table and the commands live in their own modules and are imported inside the hooks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

from flujo import hookimpl

if TYPE_CHECKING:
    import click
    from pydantic import BaseModel

    from flujo.application.runtime import Runtime
    from flujo.config import FlujoConfig
    from flujo.domain.events import PolicyDecided
    from flujo.domain.interfaces import Migration, StateBackend
    from flujo.plugin import RunRecord, RunViewSection
    from flujo.plugins.hookspecs import Register
    from flujo_governance.pii import PIIScrubbingPolicy
    from flujo_governance.settings import GovernanceSettings
    from flujo_governance.tools import ToolAllowlistPolicy

SECTION = "governance"
"""The ``flujo.toml`` section this plugin owns."""


def _settings(config: FlujoConfig) -> GovernanceSettings:
    from flujo_governance.settings import GovernanceSettings

    return config.section(SECTION, GovernanceSettings)


def _create_pii(config: FlujoConfig) -> PIIScrubbingPolicy:
    """Factory of the ``pii`` policy (installs log scrubbing when ``scrub_logs`` is on)."""
    from flujo_governance.logs import install_log_scrubbing
    from flujo_governance.pii import PIIScrubbingPolicy

    settings = _settings(config).pii
    policy = PIIScrubbingPolicy(settings)
    if settings.scrub_logs:
        install_log_scrubbing(policy)
    return policy


def _create_tool_allowlist(config: FlujoConfig) -> ToolAllowlistPolicy:
    """Factory of the ``tool_allowlist`` policy."""
    from flujo_governance.tools import ToolAllowlistPolicy

    return ToolAllowlistPolicy(_settings(config).tools)


@hookimpl
def flujo_register_policies(register: Register) -> None:
    """Register the ``pii`` and ``tool_allowlist`` policy factories."""
    register("pii", _create_pii)
    register("tool_allowlist", _create_tool_allowlist)


@hookimpl
def flujo_active_policies(config: FlujoConfig) -> Sequence[str]:
    """The policies ``[governance] policies`` turns on, in order."""
    return list(_settings(config).policies)


@hookimpl
def flujo_config_sections() -> dict[str, type[BaseModel]]:
    """The ``[governance]`` section."""
    from flujo_governance.settings import GovernanceSettings

    return {SECTION: GovernanceSettings}


@hookimpl
def flujo_storage_migrations(dialect: str) -> Sequence[Migration]:
    """The ``policy_decisions`` audit table."""
    from flujo_governance.audit import migrations

    return migrations(dialect)


@hookimpl
def flujo_policy_decided(event: PolicyDecided, runtime: Runtime) -> None:
    """Schedule the audit row of a decision (DENY and REDACT; ALLOW with ``audit_allow``)."""
    settings = _settings(runtime.config)
    if settings.audit:
        from flujo_governance.audit import record

        record(event, runtime, include_allow=settings.audit_allow)


@hookimpl
def flujo_run_view(run: RunRecord, state: StateBackend) -> Awaitable[RunViewSection | None]:
    """The run's policy decisions, for ``flujo runs show``."""
    from flujo_governance.audit import run_view

    return run_view(state, run.run_id)


@hookimpl
def flujo_register_commands(cli: click.Group) -> None:
    """Add ``flujo governance`` (imported only when it runs)."""
    from flujo.cli import lazy_command

    cli.add_command(
        lazy_command(
            "governance",
            "flujo_governance.commands:governance",
            help="Try the PII scrubber on sample data; read the policy audit log.",
        )
    )
