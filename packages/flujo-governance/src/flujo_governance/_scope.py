"""Which step a policy is deciding for."""

from __future__ import annotations

from dataclasses import dataclass

from flujo.domain.scope import current_step_scope

__all__ = ["StepInfo", "step_info"]


@dataclass(frozen=True, slots=True)
class StepInfo:
    """The step a decision is about (``name`` is ``None`` outside a run)."""

    name: str | None
    tags: tuple[str, ...]


_NO_STEP = StepInfo(None, ())


def step_info() -> StepInfo:
    """The running step's name and tags (the core keeps the step's scope current for every
    policy call); outside a run, a step with no name and no tags."""
    scope = current_step_scope()
    if scope is None:
        return _NO_STEP
    return StepInfo(scope.step_name, tuple(scope.tags))
