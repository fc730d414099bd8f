"""The scope of the step being executed, visible to agents and tools while it runs.

The :class:`~flujo.application.step_coordinator.StepCoordinator` sets it around each agent call;
agents read it to route tool calls through the policies and to respect the run's remaining
usage budget. Outside a step it is ``None``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flujo.domain.models import Usage, UsageLimits

if TYPE_CHECKING:
    from flujo.domain.context import PipelineContext

ToolCallGuard = Callable[[str, dict[str, Any]], Awaitable[None]]
"""``await guard(tool_name, args)`` returns when the call may go ahead and raises
:class:`~flujo.domain.errors.PolicyViolation` when a policy denies it."""


@dataclass(slots=True)
class StepScope:
    """What an agent may know about the step it runs in."""

    run_id: str
    step_name: str
    context: PipelineContext
    guard_tool_call: ToolCallGuard
    limits: UsageLimits | None
    run_usage: Usage
    """Usage of the run so far, before this step."""
    usage: Usage
    """Usage of this step so far, all attempts included; agents add to it."""


_current: ContextVar[StepScope | None] = ContextVar("flujo_step_scope", default=None)


def current_step_scope() -> StepScope | None:
    """The scope of the step running in this task, or ``None`` outside a step."""
    return _current.get()


def record_usage(usage: Usage) -> None:
    """Add what a model call spent to the running step (no-op outside a step).

    Agents built with :func:`flujo.make_agent_async` do this themselves; call it from a custom
    agent so tokens, requests and cost count towards the run's usage and limits.
    """
    scope = _current.get()
    if scope is not None:
        scope.usage.add(usage)


def set_step_scope(scope: StepScope | None) -> object:
    """Enter ``scope``; returns a token for :func:`reset_step_scope`."""
    return _current.set(scope)


def reset_step_scope(token: object) -> None:
    """Leave the scope entered with :func:`set_step_scope`."""
    _current.reset(token)  # type: ignore[arg-type]
