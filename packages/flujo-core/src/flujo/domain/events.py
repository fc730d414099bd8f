"""Events the runner emits to plugins (see :mod:`flujo.plugins.hookspecs`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import FrozenInstanceError, dataclass, field
from typing import TYPE_CHECKING, Any

from flujo.domain.interfaces import PolicyDecision
from flujo.domain.models import RunRecord, StepResult

if TYPE_CHECKING:
    from flujo.domain.context import PipelineContext


class ContextSnapshot:
    """The run's context as an event hands it to plugins: a scrubbed copy, and the keys of its
    scalar fields (:attr:`StepCompleted.context_keys`), built the first time either is read.

    The runner captures what the copy is made of when it makes the event (the context's stored
    form at that moment), so a snapshot read late still shows the context as it was then; what
    it defers is the work a plugin that never reads the context does not need (the policies'
    ``scrub`` of it, the copy, the keys). Reading it from a hook is what pays for it, once per
    event. If building it fails (a policy's ``scrub`` raised), the read raises, in the plugin
    that read it, every time: nothing unscrubbed is handed out instead.

    .. versionadded:: 0.3
    """

    __slots__ = ("_build", "_built")

    def __init__(self, build: Callable[[], tuple[PipelineContext, Mapping[str, str]]]) -> None:
        self._build = build
        self._built: tuple[PipelineContext, Mapping[str, str]] | None = None

    @classmethod
    def of(cls, context: PipelineContext, keys: Mapping[str, str] | None = None) -> ContextSnapshot:
        """A snapshot already built from ``context`` (a copy the caller made) and ``keys``."""
        snapshot = cls(_unreachable)
        snapshot._built = (context, {} if keys is None else keys)
        return snapshot

    @property
    def built(self) -> bool:
        """Whether it has been read (and so built)."""
        return self._built is not None

    def get(self) -> tuple[PipelineContext, Mapping[str, str]]:
        """``(context, context_keys)``, built on the first call."""
        built = self._built
        if built is None:
            built = self._built = self._build()
            self._build = _unreachable  # let go of what it was built from (the live context)
        return built


def _unreachable() -> tuple[PipelineContext, Mapping[str, str]]:
    raise AssertionError("a snapshot made with ContextSnapshot.of is already built")


_set = object.__setattr__  # how the frozen events set their attributes in __init__


def _snapshot_of(
    context: PipelineContext | ContextSnapshot, keys: Mapping[str, str] | None
) -> ContextSnapshot:
    if isinstance(context, ContextSnapshot):
        if keys is not None:
            raise TypeError("context_keys come from the ContextSnapshot; pass one or the other")
        return context
    return ContextSnapshot.of(context, keys)


class _Event:
    """What the three events that carry a context share: immutability (like the frozen
    dataclasses they were), a readable ``repr``, and ``context`` / ``context_keys`` read from
    their :class:`ContextSnapshot`.

    Not dataclasses: ``context`` is a property (built when read), which a dataclass field
    cannot be."""

    __slots__ = ("_snapshot",)
    _fields: tuple[str, ...] = ()
    _snapshot: ContextSnapshot

    @property
    def context(self) -> PipelineContext:
        """A scrubbed snapshot of the run's context; never the live object (its fields hold
        the stored JSON form and are not validated again). Built the first time it is read
        (see :class:`ContextSnapshot`)."""
        return self._snapshot.get()[0]

    @property
    def context_keys(self) -> Mapping[str, str]:
        """``{field: key}`` for the context's scalar fields, to match by them across runs (a
        memory's scope): the value's text, or ``fp:<hash>`` when a policy flags the value
        (:meth:`flujo.application.scrubbing.Scrubbing.key` gives the same key for a live
        value). Built with :attr:`context`.

        .. versionadded:: 0.2"""
        return self._snapshot.get()[1]

    @property
    def snapshot(self) -> ContextSnapshot:
        """The event's :class:`ContextSnapshot` (whether it was read: ``snapshot.built``).

        .. versionadded:: 0.3"""
        return self._snapshot

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __repr__(self) -> str:
        # The context is left out: a repr must not build it (nor print a run's data).
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({shown})"


class RunStarted(_Event):
    """A runner starts executing a run: a new one (``start == 0``) or a resumed one (``start``
    is the index of the first step it will run). The run's row is already persisted.

    Everything here is as stored: ``input`` (the data the first step to run receives) and
    ``context`` went through the active policies' ``scrub``. ``context`` and ``context_keys``
    are built when first read (:class:`ContextSnapshot`, *new in 0.3*).

    Attributes: ``run_id``, ``pipeline_name``, ``start``, ``input``, ``context`` (a scrubbed
    snapshot of the run's context; never the live object), ``context_keys`` (as
    :attr:`StepCompleted.context_keys`), ``resumed`` (whether this run executed before: a
    resume, or a stale run taken over; ``start`` cannot tell, since a run paused at its first
    step resumes at ``start == 0``; *new in 0.2*).

    .. versionadded:: 0.2
    """

    __slots__ = ("input", "pipeline_name", "resumed", "run_id", "start")
    _fields = ("run_id", "pipeline_name", "start", "input", "resumed")
    run_id: str
    pipeline_name: str
    start: int
    input: Any
    resumed: bool

    def __init__(
        self,
        run_id: str,
        pipeline_name: str,
        start: int,
        input: Any,
        context: PipelineContext | ContextSnapshot,
        context_keys: Mapping[str, str] | None = None,
        resumed: bool = False,
    ) -> None:
        _set(self, "run_id", run_id)
        _set(self, "pipeline_name", pipeline_name)
        _set(self, "start", start)
        _set(self, "input", input)
        _set(self, "_snapshot", _snapshot_of(context, context_keys))
        _set(self, "resumed", resumed)


class StepStarted(_Event):
    """A step is about to run (before its policies, agent, tools and retries).

    ``input`` and ``context`` are scrubbed, as in :class:`StepCompleted`; ``context`` is the
    context as it was before the step, built when first read (:class:`ContextSnapshot`, *new
    in 0.3*).

    Attributes: ``run_id``, ``pipeline_name``, ``index``, ``step_name``, ``input``,
    ``context``, ``tags``, ``context_keys``.

    .. versionadded:: 0.2
    """

    __slots__ = ("index", "input", "pipeline_name", "run_id", "step_name", "tags")
    _fields = ("run_id", "pipeline_name", "index", "step_name", "input", "tags")
    run_id: str
    pipeline_name: str
    index: int
    step_name: str
    input: Any
    tags: tuple[str, ...]

    def __init__(
        self,
        run_id: str,
        pipeline_name: str,
        index: int,
        step_name: str,
        input: Any,
        context: PipelineContext | ContextSnapshot,
        tags: tuple[str, ...],
        context_keys: Mapping[str, str] | None = None,
    ) -> None:
        _set(self, "run_id", run_id)
        _set(self, "pipeline_name", pipeline_name)
        _set(self, "index", index)
        _set(self, "step_name", step_name)
        _set(self, "input", input)
        _set(self, "_snapshot", _snapshot_of(context, context_keys))
        _set(self, "tags", tags)


class StepCompleted(_Event):
    """A step finished (successfully or not) and its result is persisted.

    Everything here is as stored: ``step``, ``input`` and ``context`` went through the active
    policies' ``scrub`` (see :class:`flujo.application.scrubbing.Scrubbing`). ``context`` is
    the context after the step, built when first read (:class:`ContextSnapshot`, *new in
    0.3*).

    Attributes: ``run_id``, ``pipeline_name``, ``index``, ``step`` (the
    :class:`~flujo.domain.models.StepResult`), ``input``, ``context``, ``tags``,
    ``context_keys``.
    """

    __slots__ = ("index", "input", "pipeline_name", "run_id", "step", "tags")
    _fields = ("run_id", "pipeline_name", "index", "step", "input", "tags")
    run_id: str
    pipeline_name: str
    index: int
    step: StepResult
    input: Any
    tags: tuple[str, ...]

    def __init__(
        self,
        run_id: str,
        pipeline_name: str,
        index: int,
        step: StepResult,
        input: Any,
        context: PipelineContext | ContextSnapshot,
        tags: tuple[str, ...],
        context_keys: Mapping[str, str] | None = None,
    ) -> None:
        _set(self, "run_id", run_id)
        _set(self, "pipeline_name", pipeline_name)
        _set(self, "index", index)
        _set(self, "step", step)
        _set(self, "input", input)
        _set(self, "_snapshot", _snapshot_of(context, context_keys))
        _set(self, "tags", tags)


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
