"""Flujo: typed, durable AI-agent pipelines.

The public API is re-exported here and imported on first use (PEP 562), so ``import flujo``
and ``from flujo import hookimpl`` in a plugin cost almost nothing: ``flujo --help`` stays
fast with every plugin installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flujo.agents import AsyncAgentWrapper, make_agent_async
    from flujo.application.interrupt import stop_requested
    from flujo.application.runner import Flujo
    from flujo.config import FlujoConfig, load_config
    from flujo.domain.context import PipelineContext
    from flujo.domain.errors import (
        ConfigError,
        FlujoError,
        InputValidationError,
        MissingPluginError,
        PipelineDefinitionError,
        PluginError,
        PolicyViolation,
        ResumeError,
        RunNotFoundError,
        StateError,
        StepFailedError,
        StepTimeoutError,
        TargetError,
        ToolApprovalRequired,
        ToolCallRefused,
        UsageLimitExceededError,
        UserError,
    )
    from flujo.domain.interfaces import PolicyDecision
    from flujo.domain.models import (
        Pipeline,
        PipelineResult,
        RunStatus,
        Step,
        StepResult,
        StepStatus,
        Usage,
        UsageLimits,
    )
    from flujo.domain.scope import record_usage
    from flujo.plugins.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "AsyncAgentWrapper",
    "ConfigError",
    "Flujo",
    "FlujoConfig",
    "FlujoError",
    "InputValidationError",
    "MissingPluginError",
    "Pipeline",
    "PipelineContext",
    "PipelineDefinitionError",
    "PipelineResult",
    "PluginError",
    "PolicyDecision",
    "PolicyViolation",
    "ResumeError",
    "RunNotFoundError",
    "RunStatus",
    "StateError",
    "Step",
    "StepFailedError",
    "StepResult",
    "StepStatus",
    "StepTimeoutError",
    "TargetError",
    "ToolApprovalRequired",
    "ToolCallRefused",
    "Usage",
    "UsageLimitExceededError",
    "UsageLimits",
    "UserError",
    "__version__",
    "hookimpl",
    "load_config",
    "make_agent_async",
    "record_usage",
    "stop_requested",
]

_LAZY = {
    "AsyncAgentWrapper": "flujo.agents",
    "ConfigError": "flujo.domain.errors",
    "Flujo": "flujo.application.runner",
    "stop_requested": "flujo.application.interrupt",
    "FlujoConfig": "flujo.config",
    "FlujoError": "flujo.domain.errors",
    "InputValidationError": "flujo.domain.errors",
    "MissingPluginError": "flujo.domain.errors",
    "Pipeline": "flujo.domain.models",
    "PipelineContext": "flujo.domain.context",
    "PipelineDefinitionError": "flujo.domain.errors",
    "PipelineResult": "flujo.domain.models",
    "PluginError": "flujo.domain.errors",
    "PolicyDecision": "flujo.domain.interfaces",
    "PolicyViolation": "flujo.domain.errors",
    "ResumeError": "flujo.domain.errors",
    "RunNotFoundError": "flujo.domain.errors",
    "RunStatus": "flujo.domain.models",
    "StateError": "flujo.domain.errors",
    "Step": "flujo.domain.models",
    "StepFailedError": "flujo.domain.errors",
    "StepResult": "flujo.domain.models",
    "StepStatus": "flujo.domain.models",
    "StepTimeoutError": "flujo.domain.errors",
    "TargetError": "flujo.domain.errors",
    "ToolApprovalRequired": "flujo.domain.errors",
    "ToolCallRefused": "flujo.domain.errors",
    "Usage": "flujo.domain.models",
    "UsageLimitExceededError": "flujo.domain.errors",
    "UsageLimits": "flujo.domain.models",
    "UserError": "flujo.domain.errors",
    "hookimpl": "flujo.plugins.hookspecs",
    "load_config": "flujo.config",
    "make_agent_async": "flujo.agents",
    "record_usage": "flujo.domain.scope",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flujo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
