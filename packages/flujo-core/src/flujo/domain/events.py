"""Events the runner emits to plugins (see :mod:`flujo.plugins.hookspecs`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flujo.domain.interfaces import PolicyDecision
from flujo.domain.models import RunRecord, StepResult

if TYPE_CHECKING:
    from flujo.domain.context import PipelineContext


@dataclass(frozen=True, slots=True)
class RunStarted:
    """A runner starts executing a run: a new one (``start == 0``) or a resumed one (``start``
    is the index of the first step it will run). The run's row is already persisted.

    Everything here is as stored: ``input`` (the data the first step to run receives) and
    ``context`` went through the active policies' ``scrub``.

    .. versionadded:: 0.2
    """

    run_id: str
    pipeline_name: str
    start: int
    input: Any
    context: PipelineContext
    """A scrubbed snapshot of the run's context; never the live object."""
    context_keys: Mapping[str, str] = field(default_factory=dict)
    """As :attr:`StepCompleted.context_keys`."""
    resumed: bool = False
    """Whether this run executed before (a resume, or a stale run taken over): ``start``
    cannot tell, since a run paused at its first step resumes at ``start == 0``.

    .. versionadded:: 0.2"""


@dataclass(frozen=True, slots=True)
class StepStarted:
    """A step is about to run (before its policies, agent, tools and retries).

    ``input`` and ``context`` are scrubbed, as in :class:`StepCompleted`.

    .. versionadded:: 0.2
    """

    run_id: str
    pipeline_name: str
    index: int
    step_name: str
    input: Any
    context: PipelineContext
    """A scrubbed snapshot of the run's context before the step; never the live object."""
    tags: tuple[str, ...]
    context_keys: Mapping[str, str] = field(default_factory=dict)
    """As :attr:`StepCompleted.context_keys`."""


@dataclass(frozen=True, slots=True)
class StepCompleted:
    """A step finished (successfully or not) and its result is persisted.

    Everything here is as stored: ``step``, ``input`` and ``context`` went through the active
    policies' ``scrub`` (see :class:`flujo.application.scrubbing.Scrubbing`).
    """

    run_id: str
    pipeline_name: str
    index: int
    step: StepResult
    input: Any
    context: PipelineContext
    """A snapshot of the run's context after the step, scrubbed; never the live object (its
    fields hold the stored JSON form and are not validated again)."""
    tags: tuple[str, ...]
    context_keys: Mapping[str, str] = field(default_factory=dict)
    """``{field: key}`` for the context's scalar fields, to match by them across runs (a
    memory's scope): the value's text, or ``fp:<hash>`` when a policy flags the value
    (:meth:`flujo.application.scrubbing.Scrubbing.key` gives the same key for a live value).

    .. versionadded:: 0.2"""


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
    """``"input"``, ``"tool_call"``, ``"tool_result"`` or ``"output"``; ``"approval"`` for a
    person's answer to a paused run (a human step's, or a tool call's a policy wanted
    approved): ``ALLOW`` approved, ``DENY`` rejected, :attr:`actor` who answered."""
    decision: PolicyDecision
    tool_name: str | None = None
    reason: str | None = None
    """Why the policy denied (``PolicyViolation.reason``), scrubbed by the run's policies."""
    rule: str | None = None
    """The rule that decided, as the policy said with :func:`flujo.plugin.decision_detail`
    (scrubbed like ``reason``).

    .. versionadded:: 0.2"""
    entities: Mapping[str, int] = field(default_factory=dict)
    """The kinds of sensitive data the policy found and how many of each (``{"EMAIL": 2}``;
    never the values), as it said with :func:`flujo.plugin.decision_detail`.

    .. versionadded:: 0.2"""
    actor: str | None = None
    """Who answered (``where == "approval"``), scrubbed like ``reason``.

    .. versionadded:: 0.3"""
