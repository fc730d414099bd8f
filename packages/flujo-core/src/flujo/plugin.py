"""Everything a Flujo plugin needs, from one module: ``from flujo.plugin import ...``.

Hook markers and registration types, the runtime handed to hooks, the events observers
receive, the protocols each kind of registered object implements and their data types,
storage migrations and state access, command-line helpers, the current config, and creating
a registered object outside a run. ``docs/plugins.md`` imports only from here; so does
``examples/flujo-plugin-example``.

Names are imported on first use (PEP 562): a plugin module that does ``from flujo.plugin
import hookimpl`` at import time costs almost nothing, so ``flujo --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    from collections.abc import Callable

    from flujo.application.background import BackgroundTaskManager
    from flujo.application.decoding import decoded
    from flujo.application.operations import operation
    from flujo.application.run_view import PluginSection, plugin_sections
    from flujo.application.runtime import Runtime
    from flujo.application.targets import load_target
    from flujo.cli import current_config, lazy_command
    from flujo.cli._output import echo_table, table_lines
    from flujo.config import FlujoConfig, load_config
    from flujo.domain.context import PipelineContext
    from flujo.domain.errors import (
        ConfigError,
        PluginError,
        PolicyViolation,
        StateNotFoundError,
        StateOutdatedError,
        ToolApprovalRequired,
        ToolCallRefused,
        UserError,
    )
    from flujo.domain.events import (
        PolicyDecided,
        RunFinalized,
        RunStarted,
        StepCompleted,
        StepStarted,
    )
    from flujo.domain.formatting import MISSING, human_time, json_time, printable
    from flujo.domain.interfaces import (
        Embedder,
        Engine,
        EvaluationResult,
        Evaluator,
        ExecutionResult,
        GovernancePolicy,
        Lease,
        LeaseRenewer,
        Memory,
        Migration,
        PolicyDecision,
        Retriever,
        SandboxLimits,
        SandboxProtocol,
        ScoredMemory,
        StateBackend,
        StateLocation,
        StepCommit,
        StepWrite,
        VectorStoreProtocol,
    )
    from flujo.domain.models import RunRecord, RunStatus, StepResult, StepStatus, Usage
    from flujo.domain.operations import Operation, OperationValue
    from flujo.domain.propagation import HeaderProvider, outgoing_headers, providing_headers
    from flujo.domain.run_view import RunViewSection
    from flujo.domain.scope import decision_detail, model_tool_name, tool_id_of
    from flujo.plugins.hookspecs import (
        Factory,
        Register,
        RegisterEmbedders,
        RegisterEngines,
        RegisterEvaluators,
        RegisterPolicies,
        RegisterSandboxes,
        RegisterStateBackends,
        RegisterTools,
        RegisterVectorStores,
        hookimpl,
    )
    from flujo.plugins.registry import Kind
    from flujo.state import migrated, open_state, state_backend
    from flujo.state.run_ids import resolve_run_id

_LAZY = {
    # hooks and registration
    "hookimpl": "flujo.plugins.hookspecs",
    "Factory": "flujo.plugins.hookspecs",
    "Register": "flujo.plugins.hookspecs",
    "RegisterPolicies": "flujo.plugins.hookspecs",
    "RegisterVectorStores": "flujo.plugins.hookspecs",
    "RegisterEmbedders": "flujo.plugins.hookspecs",
    "RegisterSandboxes": "flujo.plugins.hookspecs",
    "RegisterEvaluators": "flujo.plugins.hookspecs",
    "RegisterTools": "flujo.plugins.hookspecs",
    "RegisterEngines": "flujo.plugins.hookspecs",
    "RegisterStateBackends": "flujo.plugins.hookspecs",
    "Kind": "flujo.plugins.registry",
    # what hooks receive
    "Runtime": "flujo.application.runtime",
    "BackgroundTaskManager": "flujo.application.background",
    # text with what may hide data from a policy decoded (escapes, percent, base64...)
    "decoded": "flujo.application.decoding",
    "FlujoConfig": "flujo.config",
    "load_config": "flujo.config",
    "PipelineContext": "flujo.domain.context",
    "RunStarted": "flujo.domain.events",
    "StepStarted": "flujo.domain.events",
    "StepCompleted": "flujo.domain.events",
    "RunFinalized": "flujo.domain.events",
    "PolicyDecided": "flujo.domain.events",
    "RunRecord": "flujo.domain.models",
    "RunStatus": "flujo.domain.models",
    "StepResult": "flujo.domain.models",
    "StepStatus": "flujo.domain.models",
    "Usage": "flujo.domain.models",
    "RunViewSection": "flujo.domain.run_view",
    # every installed plugin's section of a run's view, as `flujo runs show` collects them
    "PluginSection": "flujo.application.run_view",
    "plugin_sections": "flujo.application.run_view",
    # the pipeline a run records (RunRecord.pipeline_ref), to answer or resume it
    "load_target": "flujo.application.targets",
    # protocols and their data types
    "GovernancePolicy": "flujo.domain.interfaces",
    "PolicyDecision": "flujo.domain.interfaces",
    "VectorStoreProtocol": "flujo.domain.interfaces",
    "Embedder": "flujo.domain.interfaces",
    "Engine": "flujo.domain.interfaces",
    "Retriever": "flujo.domain.interfaces",
    "Memory": "flujo.domain.interfaces",
    "ScoredMemory": "flujo.domain.interfaces",
    "SandboxProtocol": "flujo.domain.interfaces",
    "SandboxLimits": "flujo.domain.interfaces",
    "ExecutionResult": "flujo.domain.interfaces",
    "Evaluator": "flujo.domain.interfaces",
    "EvaluationResult": "flujo.domain.interfaces",
    "StateBackend": "flujo.domain.interfaces",
    "StateLocation": "flujo.domain.interfaces",
    "StepCommit": "flujo.domain.interfaces",
    "StepWrite": "flujo.domain.interfaces",
    "Migration": "flujo.domain.interfaces",
    "Lease": "flujo.domain.interfaces",
    "LeaseRenewer": "flujo.domain.interfaces",
    # errors a plugin raises
    "ConfigError": "flujo.domain.errors",
    "UserError": "flujo.domain.errors",
    "PluginError": "flujo.domain.errors",
    "PolicyViolation": "flujo.domain.errors",
    "ToolApprovalRequired": "flujo.domain.errors",
    "ToolCallRefused": "flujo.domain.errors",
    "StateNotFoundError": "flujo.domain.errors",
    "StateOutdatedError": "flujo.domain.errors",
    # what a policy says about its decision (audit detail on PolicyDecided)
    "decision_detail": "flujo.domain.scope",
    # headers of outgoing calls made on a step's behalf (W3C trace context)
    "HeaderProvider": "flujo.domain.propagation",
    "outgoing_headers": "flujo.domain.propagation",
    "providing_headers": "flujo.domain.propagation",
    # work a plugin does for a run beside its steps (a sandbox execution, a memory search, an
    # evaluation), reported to the plugins that wrap it (flujo_wrap_operation: a span)
    "Operation": "flujo.domain.operations",
    "OperationValue": "flujo.domain.operations",
    "operation": "flujo.application.operations",
    # a registered tool's name as a model sees it, and back
    "model_tool_name": "flujo.domain.scope",
    "tool_id_of": "flujo.domain.scope",
    # state, command line, config
    "open_state": "flujo.state",
    "migrated": "flujo.state",
    "state_backend": "flujo.state",
    "resolve_run_id": "flujo.state.run_ids",
    "lazy_command": "flujo.cli",
    "current_config": "flujo.cli",
    # output for people and JSON, the same in every command
    "human_time": "flujo.domain.formatting",
    "json_time": "flujo.domain.formatting",
    "printable": "flujo.domain.formatting",
    "MISSING": "flujo.domain.formatting",
    "echo_table": "flujo.cli._output",
    "table_lines": "flujo.cli._output",
}

__all__ = [
    "MISSING",
    "BackgroundTaskManager",
    "ConfigError",
    "Embedder",
    "Engine",
    "EvaluationResult",
    "Evaluator",
    "ExecutionResult",
    "Factory",
    "FlujoConfig",
    "GovernancePolicy",
    "HeaderProvider",
    "Kind",
    "Lease",
    "LeaseRenewer",
    "Memory",
    "Migration",
    "Operation",
    "OperationValue",
    "PipelineContext",
    "PluginError",
    "PluginSection",
    "PolicyDecided",
    "PolicyDecision",
    "PolicyViolation",
    "Register",
    "RegisterEmbedders",
    "RegisterEngines",
    "RegisterEvaluators",
    "RegisterPolicies",
    "RegisterSandboxes",
    "RegisterStateBackends",
    "RegisterTools",
    "RegisterVectorStores",
    "Retriever",
    "RunFinalized",
    "RunRecord",
    "RunStarted",
    "RunStatus",
    "RunViewSection",
    "Runtime",
    "SandboxLimits",
    "SandboxProtocol",
    "ScoredMemory",
    "StateBackend",
    "StateLocation",
    "StateNotFoundError",
    "StateOutdatedError",
    "StepCommit",
    "StepCompleted",
    "StepResult",
    "StepStarted",
    "StepStatus",
    "StepWrite",
    "ToolApprovalRequired",
    "ToolCallRefused",
    "Usage",
    "UserError",
    "VectorStoreProtocol",
    "create",
    "current_config",
    "decision_detail",
    "decoded",
    "echo_table",
    "hookimpl",
    "human_time",
    "json_time",
    "lazy_command",
    "load_config",
    "load_target",
    "migrated",
    "model_tool_name",
    "open_state",
    "operation",
    "outgoing_headers",
    "plugin_sections",
    "printable",
    "providing_headers",
    "resolve_run_id",
    "state_backend",
    "table_lines",
    "tool_id_of",
]


@overload
def create(
    kind: Literal["policies"], name: str, config: FlujoConfig | None = None
) -> GovernancePolicy: ...
@overload
def create(
    kind: Literal["vector_stores"], name: str, config: FlujoConfig | None = None
) -> VectorStoreProtocol: ...
@overload
def create(
    kind: Literal["embedders"], name: str, config: FlujoConfig | None = None
) -> Embedder: ...
@overload
def create(
    kind: Literal["sandboxes"], name: str, config: FlujoConfig | None = None
) -> SandboxProtocol: ...
@overload
def create(
    kind: Literal["evaluators"], name: str, config: FlujoConfig | None = None
) -> Evaluator: ...
@overload
def create(
    kind: Literal["tools"], name: str, config: FlujoConfig | None = None
) -> Callable[..., object]: ...
@overload
def create(kind: Kind, name: str, config: FlujoConfig | None = None) -> object: ...
def create(kind: Kind, name: str, config: FlujoConfig | None = None) -> object:
    """Create the registered ``kind`` named ``name`` outside a run (a script, a command).

    ``config``: the configuration to create it with (default: :func:`load_config` of the
    current folder, with the installed plugins, loaded once per process and shared with the
    runner and the running ``flujo`` command). Inside a hook use ``runtime.create(kind,
    name)``; inside a plugin command pass :func:`current_config`. An unknown name is a
    ``ConfigError`` listing every registered name of ``kind`` and its plugin.
    """
    from flujo.config import shared_config
    from flujo.domain.errors import ConfigError
    from flujo.plugins.registry import singular

    if config is None:
        config = shared_config()
    manager = config.plugin_manager
    if manager is None:
        raise ConfigError(
            f"unknown {singular(kind)} {name!r}: this configuration has no plugins loaded "
            "(pass config=flujo.load_config())"
        )
    return manager.registry.create(kind, name, config)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flujo.plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
