"""Flujo: typed, durable AI-agent pipelines.

The public API is re-exported here. ``make_agent_async`` and the agent wrapper load
pydantic-ai only when first used, so ``import flujo`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from flujo.agents import AsyncAgentWrapper, make_agent_async

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
    "Usage",
    "UsageLimitExceededError",
    "UsageLimits",
    "UserError",
    "__version__",
    "hookimpl",
    "load_config",
    "make_agent_async",
    "record_usage",
]

_LAZY = {"make_agent_async": "flujo.agents", "AsyncAgentWrapper": "flujo.agents"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flujo' has no attribute {name!r}")
