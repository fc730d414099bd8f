"""Pipelines, steps, usage and results: the data a run is made of."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import sys
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, runtime_checkable

from flujo.domain.errors import InputValidationError, PipelineDefinitionError
from flujo.domain.formatting import json_time

if TYPE_CHECKING:
    from pydantic import TypeAdapter, ValidationError

    from flujo.domain.context import PipelineContext
    from flujo.domain.control import ContextMerge


class RunStatus(StrEnum):
    """Where a run stands. Every status but ``running`` and ``interrupted`` is final."""

    RUNNING = "running"
    INTERRUPTED = "interrupted"
    """Stopped on request (Ctrl-C, SIGTERM) with its lease released: ``flujo runs resume ID``
    continues it at once, at its first unfinished step (so does a ``--stale`` worker)."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BLOCKED = "blocked"
    """A governance policy denied an input, a tool call or an output."""
    LIMIT_EXCEEDED = "limit_exceeded"
    """The run crossed one of its :class:`UsageLimits`."""
    PAUSED = "paused"
    """Waiting for a person at a human step (:meth:`Step.human`), holding no lease and no
    worker: ``flujo runs approve/reject ID`` answers it; an approved run is then resumed like
    an ``interrupted`` one. Not final."""


class StepStatus(StrEnum):
    """The outcome of one step."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BLOCKED = "blocked"
    LIMIT_EXCEEDED = "limit_exceeded"
    PAUSED = "paused"
    """A human step waiting for its answer."""


@dataclass(slots=True)
class Usage:
    """Tokens, model requests and cost spent by a step or a run."""

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def add(self, other: Usage) -> None:
        """Add ``other`` into this usage, in place."""
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.requests += other.requests
        self.cost_usd += other.cost_usd

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with ``total_tokens`` included."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "requests": self.requests,
            "cost_usd": self.cost_usd,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """The inverse of :meth:`to_dict` (unknown keys are ignored)."""
        return cls(
            input_tokens=int(data.get("input_tokens", 0)),
            output_tokens=int(data.get("output_tokens", 0)),
            requests=int(data.get("requests", 0)),
            cost_usd=float(data.get("cost_usd", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class UsageLimits:
    """Per-run ceilings. ``None`` means no limit. Crossing one ends the run ``limit_exceeded``."""

    total_tokens: int | None = None
    requests: int | None = None
    cost_usd: float | None = None

    def first_crossed(self, usage: Usage) -> str | None:
        """Describe the first limit ``usage`` has crossed, or ``None`` when within all."""
        if self.total_tokens is not None and usage.total_tokens > self.total_tokens:
            return f"total_tokens {usage.total_tokens} > limit {self.total_tokens}"
        if self.requests is not None and usage.requests > self.requests:
            return f"requests {usage.requests} > limit {self.requests}"
        if self.cost_usd is not None and usage.cost_usd > self.cost_usd:
            return f"cost_usd {usage.cost_usd:.6f} > limit {self.cost_usd}"
        return None


@runtime_checkable
class AgentLike(Protocol):
    """Anything with ``async run(data, *, context)`` is an agent.

    ``run`` returns the step's output; an agent that calls models reports what it spent with
    :func:`flujo.record_usage`. Optional attributes ``input_type`` and ``output_type`` let the
    pipeline check types when it is built.
    """

    def run(self, data: Any, *, context: PipelineContext) -> Awaitable[Any]:
        """Produce the step's output from ``data``."""
        ...


@dataclass(slots=True)
class StepResult:
    """The outcome of one step of a run."""

    name: str
    status: StepStatus
    output: Any = None
    error: str | None = None
    attempts: int = 0
    latency_ms: float = 0.0
    usage: Usage = field(default_factory=Usage)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape the CLI prints for a step."""
        return {
            "name": self.name,
            "status": self.status.value,
            "output": self.output,
            "error": self.error,
            "attempts": self.attempts,
            "latency_ms": round(self.latency_ms, 3),
            "usage": self.usage.to_dict(),
        }


@dataclass(slots=True)
class PipelineResult:
    """What a run returns: its id, final status, output, step results and usage."""

    run_id: str
    status: RunStatus
    output: Any
    steps: list[StepResult]
    usage: Usage
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        """True when the run finished with status ``succeeded``."""
        return self.status is RunStatus.SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape the CLI prints for a run (``flujo run --json``)."""
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "output": self.output,
            "error": self.error,
            "steps": [s.to_dict() for s in self.steps],
            "usage": self.usage.to_dict(),
        }


@dataclass(slots=True)
class RunRecord:
    """A run as stored in the state database (values are JSON-decoded)."""

    run_id: str
    pipeline_name: str
    pipeline_version: str
    pipeline_ref: str | None
    status: RunStatus
    input: Any
    output: Any
    error: str | None
    context: dict[str, Any]
    usage: Usage
    current_step: int
    created_at: float
    updated_at: float
    steps: list[StepResult] = field(default_factory=list)
    last_output: Any = None
    """The output of the last finished step: the input of the next one on resume."""
    version: int = 0
    """Bumped by every write to the run (a step, its end, a worker taking it): taking a run
    is conditional on the version the taker read, so it never acts on a stale view."""
    engine: str | None = None
    """The engine that drives the run step by step (``temporal``), recorded at its creation;
    ``None``: this process's runner (``local``). Only ``local`` runs are claimed by the
    stale drain (``flujo runs resume --stale``): the engine owns its runs' recovery."""
    inner_steps: list[InnerStep] = field(default_factory=list)
    """The committed steps inside branch/loop/map/parallel steps, addressed by path
    (``StepResult.name`` is the path, e.g. ``research/web[2]/summarize``)."""

    def to_dict(self, *, with_steps: bool = True) -> dict[str, Any]:
        """The JSON shape the CLI prints (``flujo runs show/list --json``)."""
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "pipeline": self.pipeline_name,
            "pipeline_version": self.pipeline_version,
            "status": self.status.value,
            "output": self.output,
            "error": self.error,
            "usage": self.usage.to_dict(),
            "current_step": self.current_step,
            "engine": self.engine or "local",
            "created_at": json_time(self.created_at),
            "updated_at": json_time(self.updated_at),
        }
        if with_steps:
            data["input"] = self.input
            data["context"] = self.context
            data["steps"] = [s.to_dict() for s in self.steps]
            if self.inner_steps:
                data["inner_steps"] = [
                    {**s.result.to_dict(), "path": s.path} for s in self.inner_steps
                ]
        return data


@dataclass(slots=True)
class InnerStep:
    """A committed step inside a control-flow step (see :mod:`flujo.domain.control`)."""

    index: int
    """The index of the top-level step it belongs to."""
    result: StepResult
    """Its outcome; ``result.name`` is the path."""
    context: Any = None
    """The (stored form of the) context of its scope after it, when the scope is a copy
    (a map item, a parallel branch); ``None`` when it ran on the run's own context."""

    @property
    def path(self) -> str:
        """Where it is in the tree, e.g. ``route/billing/refund``."""
        return self.result.name


# --------------------------------------------------------------------------- steps


def _is_unknown(tp: Any) -> bool:
    return tp is None or tp is Any or tp is object or tp is inspect.Parameter.empty


def _check_fits(prev: Step, nxt: Step) -> None:
    """Raise when ``prev``'s output type certainly cannot feed ``nxt``'s input type.

    Only plain classes (and the origins of generic aliases) are compared; anything subtler is
    left to validation at run time, so this never rejects a pipeline that could work.
    """
    out, inp = prev.output_type, nxt.input_type
    if _is_unknown(out) or _is_unknown(inp):
        return
    out_cls = typing.get_origin(out) or out
    inp_cls = typing.get_origin(inp) or inp
    if not (isinstance(out_cls, type) and isinstance(inp_cls, type)):
        return
    if issubclass(out_cls, inp_cls):
        return
    # Coercions pydantic performs in lax mode that a user would expect to work.
    if out_cls is int and inp_cls is float:
        return
    if issubclass(out_cls, Mapping) and not issubclass(inp_cls, (str, bytes, int, float)):
        return
    raise PipelineDefinitionError(
        f"step {prev.name!r} outputs {_type_name(out)} but step {nxt.name!r} "
        f"expects {_type_name(inp)}"
    )


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else repr(tp)


class Step:
    """One unit of a pipeline: a name, an agent and how to run it.

    ``agent`` is any object with ``async run(data, *, context)``; use :meth:`from_callable` for a
    plain function. Types come from ``input_type``/``output_type`` (given here or read from the
    agent); when known they are checked as the pipeline is built and inputs are validated at run
    time.
    """

    __slots__ = (
        "_adapter",
        "agent",
        "input_type",
        "max_retries",
        "name",
        "output_type",
        "tags",
        "timeout_s",
    )

    def __init__(
        self,
        name: str,
        agent: AgentLike,
        *,
        max_retries: int = 0,
        timeout_s: float | None = None,
        tags: Iterable[str] = (),
        input_type: Any = None,
        output_type: Any = None,
    ) -> None:
        if not name or not isinstance(name, str):
            raise PipelineDefinitionError("a step needs a non-empty string name")
        if not callable(getattr(agent, "run", None)):
            raise PipelineDefinitionError(
                f"step {name!r}: agent {agent!r} has no run(data, *, context) method; "
                "use Step.from_callable for a plain function"
            )
        if max_retries < 0:
            raise PipelineDefinitionError(f"step {name!r}: max_retries must be >= 0")
        if timeout_s is not None and timeout_s <= 0:
            raise PipelineDefinitionError(f"step {name!r}: timeout_s must be > 0")
        self.name = name
        self.agent = agent
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.tags = tuple(tags)
        self.input_type = (
            input_type if input_type is not None else getattr(agent, "input_type", None)
        )
        self.output_type = (
            output_type if output_type is not None else getattr(agent, "output_type", None)
        )
        self._adapter: TypeAdapter[Any] | None = None

    @classmethod
    def from_callable(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        max_retries: int = 0,
        timeout_s: float | None = None,
        tags: Iterable[str] = (),
    ) -> Step:
        """Make a step from a sync or async function ``fn(data)`` or ``fn(data, context)``.

        Types are read from the annotations of the first parameter and the return value. Sync
        functions run on the event loop, so keep them quick; with ``timeout_s`` they run in a
        worker thread so the timeout can be enforced.
        """
        # The caller's locals resolve string annotations naming classes defined in a function.
        caller_locals = dict(sys._getframe(1).f_locals)
        agent = _CallableAgent(fn, run_in_thread=timeout_s is not None, localns=caller_locals)
        return cls(
            name or str(getattr(fn, "__name__", "step")),
            agent,
            max_retries=max_retries,
            timeout_s=timeout_s,
            tags=tags,
        )

    def validate_input(self, data: Any) -> Any:
        """Return ``data`` validated (and coerced) to this step's input type, if it has one."""
        tp = self.input_type
        if _is_unknown(tp) or (isinstance(tp, type) and type(data) is tp):
            return data
        if self._adapter is None:
            from pydantic import TypeAdapter

            self._adapter = TypeAdapter(cast(Any, tp))
        from pydantic import ValidationError

        try:
            return self._adapter.validate_python(data)
        except ValidationError as exc:
            error = exc
            if isinstance(data, str | bytes):
                # Text from a CLI or a queue may hold JSON for a structured input type.
                try:
                    return self._adapter.validate_json(data)
                except ValidationError as json_exc:
                    # Text that is JSON: what is wrong with that JSON is the cause to report
                    # ("amount: Field required"), not that text is not an Order.
                    if json_exc.errors()[0]["type"] != "json_invalid":
                        error = json_exc
            raise InputValidationError(
                f"input to step {self.name!r} does not validate as {_type_name(tp)}: "
                f"{describe_validation_error(error, 'input')}"
            ) from exc

    def __rshift__(self, other: Step | Pipeline) -> Pipeline:
        return Pipeline([self]) >> other

    def __repr__(self) -> str:
        return f"Step({self.name!r})"

    def structure(self) -> str:
        """What the pipeline fingerprint records of this step: its name (control-flow steps
        add their tree's structure, so a changed tree is a new pipeline version)."""
        return self.name

    def inner_steps(self) -> Iterable[Step]:
        """Every step nested inside this one, depth first (none for a plain step)."""
        return ()

    # The control-flow constructors live in flujo.domain.control; these are their DSL names.
    @staticmethod
    def branch(
        name: str,
        router: Callable[..., Any] | Step,
        routes: Mapping[str, Pipeline | Step],
        *,
        default: Pipeline | Step | None = None,
    ) -> Step:
        """See :class:`flujo.domain.control.Branch`."""
        from flujo.domain.control import Branch

        return Branch(name, router, routes, default=default)

    @staticmethod
    def loop(
        name: str,
        body: Pipeline | Step,
        *,
        until: Callable[..., Any],
        max_iterations: int,
    ) -> Step:
        """See :class:`flujo.domain.control.Loop`."""
        from flujo.domain.control import Loop

        return Loop(name, body, until=until, max_iterations=max_iterations)

    @staticmethod
    def map(
        name: str,
        body: Pipeline | Step,
        *,
        concurrency: int = 8,
        context_merge: ContextMerge = "error_on_conflict",
    ) -> Step:
        """See :class:`flujo.domain.control.Map`."""
        from flujo.domain.control import Map

        return Map(name, body, concurrency=concurrency, context_merge=context_merge)

    @staticmethod
    def human(
        name: str,
        *,
        schema: Any = None,
        prompt: str = "",
        expires_in_s: float | None = None,
    ) -> Step:
        """See :class:`flujo.domain.control.Human`."""
        from flujo.domain.control import Human

        return Human(name, schema=schema, prompt=prompt, expires_in_s=expires_in_s)

    @staticmethod
    def parallel(
        name: str,
        branches: Mapping[str, Pipeline | Step],
        *,
        concurrency: int | None = None,
        merge: Callable[[dict[str, Any]], Any] | None = None,
        context_merge: ContextMerge = "error_on_conflict",
        on_branch_failure: Literal["fail", "ignore"] = "fail",
    ) -> Step:
        """See :class:`flujo.domain.control.Parallel`."""
        from flujo.domain.control import Parallel

        return Parallel(
            name,
            branches,
            concurrency=concurrency,
            merge=merge,
            context_merge=context_merge,
            on_branch_failure=on_branch_failure,
        )


def describe_validation_error(exc: ValidationError, whole: str, limit: int = 3) -> str:
    """``"amount: Field required; id: ..."``: where and what, for the first ``limit`` errors.

    ``whole`` names the value itself when an error has no location (the input, the context).
    """
    errors = exc.errors()
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or whole}: {error['msg']}"
        for error in errors[:limit]
    ]
    more = len(errors) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _type_hints(fn: Callable[..., Any], localns: dict[str, Any] | None) -> dict[str, Any]:
    """Resolved annotations of ``fn``; one that cannot be resolved is left out (unknown)."""
    with contextlib.suppress(NameError, TypeError):
        return typing.get_type_hints(fn, localns=localns)
    hints: dict[str, Any] = {}
    globalns = getattr(fn, "__globals__", {})
    for key, value in getattr(fn, "__annotations__", {}).items():
        try:
            hints[key] = eval(value, globalns, localns) if isinstance(value, str) else value
        except Exception:  # noqa: BLE001 - an unresolvable annotation means "unknown"
            continue
    return hints


class _CallableAgent:
    """Adapts a plain function to the agent protocol."""

    __slots__ = (
        "_fn",
        "_is_async",
        "_run_in_thread",
        "_takes_context",
        "context_type",
        "input_type",
        "output_type",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        run_in_thread: bool,
        localns: dict[str, Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise PipelineDefinitionError(f"{fn!r} is not callable")
        self._fn = fn
        self._is_async = inspect.iscoroutinefunction(fn)
        self._run_in_thread = run_in_thread and not self._is_async
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError) as exc:
            raise PipelineDefinitionError(f"cannot read the signature of {fn!r}") from exc
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not positional:
            raise PipelineDefinitionError(
                f"{getattr(fn, '__qualname__', fn)!r} must take the step input as its first "
                "parameter"
            )
        context_param = next((p for p in params if p.name == "context"), None)
        if context_param is None and len(positional) > 1:
            context_param = positional[1]
        self._takes_context = context_param is not None
        hints = _type_hints(fn, localns)
        self.input_type = hints.get(positional[0].name)
        self.context_type = hints.get(context_param.name) if context_param else None
        self.output_type = hints.get("return")

    @property
    def cancel_on_stop(self) -> bool:
        """Whether a run asked to stop cancels this step mid-way: async functions yes (at
        their next ``await``), sync ones no (they finish; a thread cannot be stopped safely)."""
        return self._is_async

    async def run(self, data: Any, *, context: PipelineContext) -> Any:
        if self._is_async:
            if self._takes_context:
                return await self._fn(data, context)
            return await self._fn(data)
        if self._run_in_thread:
            import asyncio

            if self._takes_context:
                return await asyncio.to_thread(self._fn, data, context)
            return await asyncio.to_thread(self._fn, data)
        if self._takes_context:
            return self._fn(data, context)
        return self._fn(data)


# --------------------------------------------------------------------------- pipelines


def _caller_module() -> str | None:
    """The module that is building a pipeline: the first frame outside the flujo package."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        mod = frame.f_globals.get("__name__", "")
        if mod != "flujo" and not mod.startswith("flujo."):
            return str(mod)
        frame = frame.f_back
    return None


class Pipeline:
    """An ordered list of steps; the output of one is the input of the next.

    Build one with ``step_a >> step_b >> step_c`` or ``Pipeline([...], name="...")``. Step
    names must be unique (they identify step results in the state database).
    """

    __slots__ = ("_defined_in", "name", "steps", "version")

    def __init__(
        self,
        steps: Iterable[Step],
        *,
        name: str | None = None,
        version: str | None = None,
    ) -> None:
        self.steps: tuple[Step, ...] = tuple(steps)
        if not self.steps:
            raise PipelineDefinitionError("a pipeline needs at least one step")
        seen: set[str] = set()
        for i, step in enumerate(self.steps):
            if not isinstance(step, Step):
                raise PipelineDefinitionError(f"pipeline item {i} is not a Step: {step!r}")
            if step.name in seen:
                raise PipelineDefinitionError(f"two steps are named {step.name!r}")
            seen.add(step.name)
            # Names are unique in the whole tree: a step's name means one step wherever a
            # policy rule, an index_steps entry or a reader of `runs show` meets it.
            for inner in step.inner_steps():
                if inner.name in seen and not inner.name.startswith("@"):
                    raise PipelineDefinitionError(
                        f"two steps are named {inner.name!r} (one inside {step.name!r})"
                    )
                seen.add(inner.name)
            if i:
                _check_fits(self.steps[i - 1], step)
        self.name = name
        self.version = version or self._fingerprint()
        self._defined_in = _caller_module()

    def _fingerprint(self) -> str:
        # The step names in order: enough to tell whether a stored run still fits the code.
        # Control-flow steps add their tree (plain steps' structure is their name, so the
        # versions of pipelines without them are what they always were).
        digest = hashlib.sha256("\x1f".join(s.structure() for s in self.steps).encode())
        return digest.hexdigest()[:12]

    @property
    def defined_in(self) -> str | None:
        """The module that built this pipeline (used to find it again on resume)."""
        return self._defined_in

    def __rshift__(self, other: Step | Pipeline) -> Pipeline:
        more = other.steps if isinstance(other, Pipeline) else (other,)
        joined = Pipeline([*self.steps, *more], name=self.name)
        joined._defined_in = self._defined_in or joined._defined_in
        return joined

    def __len__(self) -> int:
        return len(self.steps)

    def walk(self) -> list[Step]:
        """Every step of the tree, depth first: the steps inside control-flow steps too."""
        found: list[Step] = []
        for step in self.steps:
            found.append(step)
            found.extend(step.inner_steps())
        return found

    def __repr__(self) -> str:
        names = " >> ".join(s.name for s in self.steps)
        return f"Pipeline({self.name or ''!s}: {names})"
