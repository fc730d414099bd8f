"""The scope of the step being executed, visible to agents and tools while it runs.

The :class:`~flujo.application.step_coordinator.StepCoordinator` sets it around each agent call;
agents read it to route tool calls through the policies and to respect the run's remaining
usage budget. Outside a step it is ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from flujo.domain.models import Usage, UsageLimits

if TYPE_CHECKING:
    from flujo.domain.context import PipelineContext


class ToolName(str):
    """The name a policy gets for a tool call.

    For a tool a plugin registered, its id (``"flujo.builtins.code_interpreter"``; the model
    sees :func:`model_tool_name` of it); for a function tool, the function's name. ``ids``
    holds that name, plus for an output function the function's own name next to its tool
    name. A plain ``str`` for policies that do not look further; an allow/deny list should
    match any of ``ids``.
    """

    ids: tuple[str, ...]
    aliases: tuple[str, ...]
    """What the tool is *not* called but could be mistaken for: a registered tool's model
    form (``acme__sql``) and its function's ``__name__`` (``sql``). A deny list or rule should
    match these too (denying more is safe); an allow list must not (``sql`` would allow every
    plugin's ``sql``)."""

    def __new__(
        cls, name: str, ids: Iterable[str] = (), *, aliases: Iterable[str] = ()
    ) -> ToolName:
        self = super().__new__(cls, name)
        self.ids = tuple(dict.fromkeys([str(name), *(str(i) for i in ids if i)]))
        self.aliases = tuple(
            a for a in dict.fromkeys(str(a) for a in aliases if a) if a not in self.ids
        )
        return self


def tool_names(tool_name: str) -> tuple[str, ...]:
    """Every name of the tool ``tool_name`` designates (:attr:`ToolName.ids`, or the string)."""
    ids = getattr(tool_name, "ids", None)
    return ids if isinstance(ids, tuple) and ids else (str(tool_name),)


def tool_names_to_deny(tool_name: str) -> tuple[str, ...]:
    """:func:`tool_names` plus :attr:`ToolName.aliases`: what a deny list or deny rule matches,
    so one written with the model's name or the function's name still denies."""
    aliases = getattr(tool_name, "aliases", ())
    return tool_names(tool_name) + (aliases if isinstance(aliases, tuple) else ())


_SEGMENT = r"[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*"
_TOOL_ID = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
MAX_MODEL_TOOL_NAME = 64
"""The longest tool name OpenAI accepts (``^[a-zA-Z0-9_-]{1,64}$``)."""


def model_tool_name(tool_id: str) -> str:
    """The name the model sees for the registered tool ``tool_id``: each ``.`` becomes
    ``__`` (``"acme.sql"`` -> ``"acme__sql"``), because providers allow no dots in tool names.

    Reversible (:func:`tool_id_of`) and collision-free for every valid id: an id never holds
    ``__`` nor a ``_`` next to a ``.`` (:func:`tool_id_problem`), so each ``__`` of the model's
    name was a dot.
    """
    return tool_id.replace(".", "__")


def tool_id_of(model_name: str) -> str:
    """The registered id a model-visible name stands for (the inverse of
    :func:`model_tool_name`)."""
    return model_name.replace("__", ".")


def tool_id_problem(tool_id: object) -> str | None:
    """Why ``tool_id`` cannot be a registered tool's id, or ``None`` when it can.

    An id is dot-separated names of ASCII letters and digits with single ``_`` or ``-``
    between them (``"acme.sql_query"``, ``"flujo.builtins.code_interpreter"``), at most 64
    characters once its dots become ``__``.
    """
    if not isinstance(tool_id, str) or not _TOOL_ID.fullmatch(tool_id):
        return (
            "a tool id is dot-separated names of ASCII letters and digits with single '_' or "
            "'-' between them, e.g. 'acme.sql_query'"
        )
    if len(model_tool_name(tool_id)) > MAX_MODEL_TOOL_NAME:
        return (
            f"the model sees it as {model_tool_name(tool_id)!r}, longer than "
            f"{MAX_MODEL_TOOL_NAME} characters"
        )
    return None


class ToolGate(Protocol):
    """Where an agent's tool calls are checked: the step coordinator, with its policies."""

    async def guard_tool_call(
        self, scope: StepScope, tool_name: str, args: dict[str, Any], *, approved: bool = False
    ) -> None:
        """Return when the call may go ahead (see :meth:`StepScope.guard_tool_call`)."""
        ...

    async def inspect_tool_result(self, scope: StepScope, tool_name: str, result: Any) -> Any:
        """The result the model may see (see :meth:`StepScope.inspect_tool_result`)."""
        ...


@dataclass(slots=True)
class StepScope:
    """What an agent may know about the step it runs in."""

    run_id: str
    step_name: str
    context: PipelineContext
    gate: ToolGate | None
    """Checks tool calls; ``None`` when the step has no policies."""
    limits: UsageLimits | None
    run_usage: Usage
    """Usage of the run so far, before this step."""
    usage: Usage
    """Usage of this step so far, all attempts included; agents add to it."""
    tags: tuple[str, ...] = ()
    """The step's tags (policies may condition rules on them)."""

    async def guard_tool_call(
        self, tool_name: str, args: dict[str, Any], *, approved: bool = False
    ) -> None:
        """Call before running a tool the model asked for.

        Returns when the call may go ahead. Raises
        :class:`~flujo.domain.errors.ToolCallRefused` when a policy refuses this call (tell the
        model ``exc.tool_result`` instead of running the tool, and go on), or
        :class:`~flujo.domain.errors.PolicyViolation` when a policy blocks the step.
        ``approved``: a person already approved this very call at its pause. The policies are
        asked again (a denial now still wins), but their approval requests are not decided
        (nor audited) again: that decision was recorded at the pause, then the answer.
        """
        if self.gate is not None:
            await self.gate.guard_tool_call(self, tool_name, args, approved=approved)

    async def inspect_tool_result(self, tool_name: str, result: Any) -> Any:
        """Call with a tool's result before the model sees it; returns what the model may see
        (redacted when a policy says so) or raises :class:`~flujo.domain.errors.PolicyViolation`.
        """
        if self.gate is None:
            return result
        return await self.gate.inspect_tool_result(self, tool_name, result)


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


# --------------------------------------------------------------------------- decision detail


_KIND = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")
_MAX_RULE = 200


@dataclass(slots=True)
class DecisionNote:
    """What a policy said about the decision it is taking (:func:`decision_detail`)."""

    rule: str | None = None
    entities: dict[str, int] = field(default_factory=dict)


_note: ContextVar[DecisionNote | None] = ContextVar("flujo_decision_note", default=None)


def decision_detail(rule: str | None = None, entities: Mapping[str, int] | None = None) -> None:
    """Say why the decision a policy is taking was taken, for its audit trail.

    Call it from ``inspect_input``/``inspect_output``/``inspect_tool_call``/
    ``inspect_tool_result`` before returning (or raising): the runner puts ``rule`` (which
    rule decided, e.g. ``"redact"``) and ``entities`` (the kinds of sensitive data found and
    how many of each, e.g. ``{"EMAIL": 2}`` — never the values) on the
    :class:`~flujo.domain.events.PolicyDecided` event of this very call. Each call of an
    inspect method starts with no detail; a second call replaces ``rule`` and adds counts.
    Outside an inspect method run by the runner (a unit test calling it directly) it does
    nothing.

    :raises TypeError: ``rule`` is not a string, or an entity kind is not a name
        (``[A-Za-z][A-Za-z0-9_.:-]{0,63}``) or its count not a non-negative ``int``.
    :raises ValueError: ``rule`` is longer than 200 characters.
    """
    if rule is not None and not isinstance(rule, str):
        raise TypeError(f"decision_detail: rule must be a string, not {type(rule).__name__}")
    if rule is not None and len(rule) > _MAX_RULE:
        raise ValueError(f"decision_detail: rule is longer than {_MAX_RULE} characters")
    counts: dict[str, int] = {}
    for kind, n in dict(entities or {}).items():
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise TypeError(f"decision_detail: entity kind {kind!r} is not a name")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise TypeError(f"decision_detail: count of {kind} must be an int >= 0, not {n!r}")
        counts[kind] = n
    note = _note.get()
    if note is None:
        return
    if rule is not None:
        note.rule = rule
    for kind, n in counts.items():
        note.entities[kind] = note.entities.get(kind, 0) + n


def start_decision_note() -> tuple[DecisionNote, object]:
    """A fresh note for one policy call and a token for :func:`end_decision_note` (the
    runner's step coordinator, around each inspect call)."""
    note = DecisionNote()
    return note, _note.set(note)


def end_decision_note(token: object) -> None:
    """Stop noting for the policy call started with :func:`start_decision_note`."""
    _note.reset(token)  # type: ignore[arg-type]
