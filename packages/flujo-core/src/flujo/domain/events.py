"""Events the runner emits to plugins (see :mod:`flujo.plugins.hookspecs`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flujo.domain.interfaces import PolicyDecision
from flujo.domain.models import RunRecord, StepResult

if TYPE_CHECKING:
    from flujo.domain.context import PipelineContext


@dataclass(frozen=True, slots=True)
class StepCompleted:
    """A step finished (successfully or not) and its result is persisted."""

    run_id: str
    pipeline_name: str
    index: int
    step: StepResult
    input: Any
    context: PipelineContext
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RunFinalized:
    """A run reached a final status and its row is persisted."""

    run: RunRecord


@dataclass(frozen=True, slots=True)
class PolicyDecided:
    """A governance policy took a decision (for audit trails)."""

    run_id: str
    step_name: str
    policy: str
    where: str
    """``"input"``, ``"tool_call"`` or ``"output"``."""
    decision: PolicyDecision
    tool_name: str | None = None
    reason: str | None = None
