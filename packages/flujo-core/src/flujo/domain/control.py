"""Control flow inside a pipeline: branch, loop, map and parallel steps.

Each is a :class:`~flujo.domain.models.Step` whose agent runs sub-pipelines on the durable
runner (:mod:`flujo.application.control_flow`). Every step inside is committed as it finishes,
addressed by its *path* in the tree:

- ``route/billing/refund``: step ``refund`` of route ``billing`` of branch ``route``
  (``route/@router`` or ``route/<router step>`` records the route taken);
- ``retry#3/draft``: step ``draft`` in the third iteration of loop ``retry``;
- ``summaries[2]/summarize``: step ``summarize`` for item 2 (from 0) of map ``summaries``;
- ``research/web/fetch``: step ``fetch`` of branch ``web`` of parallel ``research``.

An iteration, an item or a branch has finished when its last step is committed: that row holds
its output (and its context, when it ran on a copy).

Names inside a tree may not hold the path's punctuation (``/ [ ] # @``) and are unique in the
whole tree; route and branch keys are path segments too.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from flujo.domain.errors import PipelineDefinitionError
from flujo.domain.models import (
    Pipeline,
    Step,
    _CallableAgent,
    _check_fits,
    _is_unknown,
)

if TYPE_CHECKING:
    from flujo.domain.context import PipelineContext

_RESERVED = frozenset("/[]#@")

ContextMerge = Literal["error_on_conflict", "discard"] | Callable[..., Any]
"""How the context changes of concurrent scopes (map items, parallel branches) come back:

- ``"error_on_conflict"`` (the default): every field a scope changed is applied; two scopes
  that changed the same field to different values fail the step (never last-writer-wins);
- ``"discard"``: the scopes' changes are dropped, the context is as before the step;
- a function ``merge(context, {key: scope_context})`` that applies what it wants in place.
"""


def _check_segment(what: str, name: str) -> None:
    if not isinstance(name, str) or not name:
        raise PipelineDefinitionError(f"{what} needs a non-empty string name, got {name!r}")
    bad = sorted(set(name) & _RESERVED)
    if bad:
        raise PipelineDefinitionError(
            f"{what} {name!r}: names in a control-flow tree may not contain "
            f"{' '.join(repr(c) for c in bad)} (they separate the parts of a step's path)"
        )


def _as_pipeline(owner: str, what: str, body: Any) -> Pipeline:
    if isinstance(body, Step):
        return Pipeline([body])
    if isinstance(body, Pipeline):
        return body
    raise PipelineDefinitionError(
        f"step {owner!r}: {what} must be a Step or a Pipeline, got {type(body).__name__}"
    )


def _walk(pipelines: Iterable[Pipeline]) -> list[Step]:
    found: list[Step] = []
    for pipeline in pipelines:
        for step in pipeline.steps:
            found.append(step)
            found.extend(step.inner_steps())
    return found


def _check_unique(owner: str, pipelines: Iterable[Pipeline], also: Iterable[Step] = ()) -> None:
    seen: dict[str, None] = {}
    for step in [*also, *_walk(pipelines)]:
        _check_segment(f"step {step.name!r} inside {owner!r}:", step.name)
        if step.name in seen:
            raise PipelineDefinitionError(
                f"step {owner!r}: two steps inside it are named {step.name!r} "
                "(names are unique in the whole tree)"
            )
        seen[step.name] = None


def _union(types: Iterable[Any]) -> Any:
    found: list[Any] = []
    for tp in types:
        if _is_unknown(tp):
            return None
        if tp not in found:
            found.append(tp)
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    return typing.Union[tuple(found)]  # noqa: UP007 - built from a runtime list


def _first(pipeline: Pipeline) -> Step:
    return pipeline.steps[0]


def _last(pipeline: Pipeline) -> Step:
    return pipeline.steps[-1]


def _structure(pipeline: Pipeline) -> str:
    return "(" + ",".join(s.structure() for s in pipeline.steps) + ")"


def _check_input(owner: str, input_type: Any, pipeline: Pipeline, what: str) -> None:
    """``input_type`` must be able to feed ``pipeline``'s first step."""
    if _is_unknown(input_type):
        return
    probe = Step(f"{owner}'s input", _NoAgent(), output_type=input_type)
    try:
        _check_fits(probe, _first(pipeline))
    except PipelineDefinitionError as exc:
        raise PipelineDefinitionError(f"step {owner!r}, {what}: {exc}") from None


class _NoAgent:
    """The agent of a probe step used only for build-time type checks."""

    async def run(self, data: Any, *, context: PipelineContext) -> Any:  # pragma: no cover
        raise AssertionError("never run")


class _ConstructAgent:
    """Runs a control-flow step on the durable runner (imported lazily: domain stays free of
    application code)."""

    __slots__ = ("construct",)
    cancel_on_stop = True

    def __init__(self, construct: ControlStep) -> None:
        self.construct = construct

    async def run(self, data: Any, *, context: PipelineContext) -> Any:
        from flujo.application.control_flow import run_construct

        return await run_construct(self.construct, data, context)


class ControlStep(Step):
    """A step made of sub-pipelines. Subclasses say how they run them."""

    __slots__ = ()

    kind: str = "control"

    def __init__(self, name: str, *, input_type: Any = None, output_type: Any = None) -> None:
        _check_segment("a control-flow step", name)
        super().__init__(
            name, _ConstructAgent(self), input_type=input_type, output_type=output_type
        )

    def pipelines(self) -> list[tuple[str, Pipeline]]:
        """Its sub-pipelines by key (route, branch, or the body)."""
        raise NotImplementedError

    def inner_steps(self) -> Iterable[Step]:
        return _walk(p for _, p in self.pipelines())

    def structure(self) -> str:
        parts = ",".join(f"{key}={_structure(p)}" for key, p in self.pipelines())
        return f"{self.name}<{self.kind}:{parts}>"

    def validate_input(self, data: Any) -> Any:
        # The inner steps validate what they get; a construct's own input type only feeds
        # the build-time checks.
        return data


# --------------------------------------------------------------------------- branch


def _route_key(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"a router must return a route name (str or enum), got {value!r}")
    return str(value)


def _possible_keys(tp: Any) -> list[str] | None:
    """Every route name an output of type ``tp`` can be (``Literal``/enum), if known."""
    if typing.get_origin(tp) is Literal:
        return [_route_key(v) for v in typing.get_args(tp)]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return [_route_key(m) for m in tp]
    return None


class Branch(ControlStep):
    """Route the input to one of several sub-pipelines.

    ``router`` is a function ``router(data)`` / ``router(data, context)`` or a :class:`Step`
    (an agent) whose output names the route: a ``str`` key of ``routes``, or an enum member
    or ``Literal`` value whose value is one. The chosen route gets the branch's input (to
    route on an agent's structured output, put that agent before the branch and route with a
    function of its output). A name no route has goes to ``default``; with no default that
    fails the step. The route taken is committed (``name/@router``, or the router step's
    path), so a resumed run never routes again.

    The output type is the union of the routes' output types. Checked when built: every
    route accepts the router's input type, and a router typed ``Literal``/enum names only
    existing routes (or there is a default).
    """

    __slots__ = ("default", "router", "routes")
    kind = "branch"

    def __init__(
        self,
        name: str,
        router: Callable[..., Any] | Step,
        routes: Mapping[str, Pipeline | Step],
        *,
        default: Pipeline | Step | None = None,
    ) -> None:
        if not routes:
            raise PipelineDefinitionError(f"branch {name!r} needs at least one route")
        if isinstance(router, Step):
            self.router = router
        elif callable(router):
            self.router = Step("@router", _CallableAgent(router, run_in_thread=False))
        else:
            raise PipelineDefinitionError(
                f"branch {name!r}: router must be a function or a Step, got {router!r}"
            )
        self.routes: dict[str, Pipeline] = {}
        for key, body in routes.items():
            _check_segment(f"branch {name!r}: route", key)
            self.routes[key] = _as_pipeline(name, f"route {key!r}", body)
        self.default = None if default is None else _as_pipeline(name, "default", default)
        everything = [*self.routes.values(), *([self.default] if self.default else [])]
        routers = [self.router] if not self.router.name.startswith("@") else []
        _check_unique(name, everything, also=routers)
        input_type = self.router.input_type
        for key, pipeline in self.pipelines():
            _check_input(name, input_type, pipeline, f"route {key!r}")
        keys = _possible_keys(self.router.output_type)
        if keys is not None and self.default is None:
            missing = [k for k in keys if k not in self.routes]
            if missing:
                raise PipelineDefinitionError(
                    f"branch {name!r}: the router can return {', '.join(map(repr, missing))} "
                    "but no route has that name and there is no default"
                )
        super().__init__(
            name,
            input_type=input_type,
            output_type=_union(_last(p).output_type for p in everything),
        )

    def pipelines(self) -> list[tuple[str, Pipeline]]:
        found = list(self.routes.items())
        if self.default is not None:
            found.append(("@default", self.default))
        return found

    def inner_steps(self) -> Iterable[Step]:
        return [self.router, *super().inner_steps()]

    def structure(self) -> str:
        return f"{super().structure()}[router={self.router.structure()}]"

    def choose(self, decision: Any) -> tuple[str, Pipeline]:
        """The route for the router's output: ``(key, pipeline)``; raises when there is none."""
        key = _route_key(decision)
        if key in self.routes:
            return key, self.routes[key]
        if self.default is not None:
            return "@default", self.default
        raise LookupError(
            f"branch {self.name!r}: the router chose {key!r}, which is no route "
            f"(routes: {', '.join(map(repr, self.routes))}) and there is no default"
        )


# --------------------------------------------------------------------------- loop


class Loop(ControlStep):
    """Run ``body`` again and again, each iteration's output the next one's input, until
    ``until(output)`` / ``until(output, context)`` is true. ``max_iterations`` is required:
    a loop still unfinished after that many iterations fails the step, saying so.

    Iteration ``n`` (from 1) commits its steps as ``name#n/step``; a resumed loop continues
    with the iteration it was in.
    """

    __slots__ = ("body", "max_iterations", "until")
    kind = "loop"

    def __init__(
        self,
        name: str,
        body: Pipeline | Step,
        *,
        until: Callable[..., Any],
        max_iterations: int,
    ) -> None:
        if not callable(until):
            raise PipelineDefinitionError(f"loop {name!r}: until must be a function")
        if isinstance(max_iterations, bool) or not isinstance(max_iterations, int):
            raise PipelineDefinitionError(f"loop {name!r}: max_iterations must be an int")
        if max_iterations < 1:
            raise PipelineDefinitionError(f"loop {name!r}: max_iterations must be >= 1")
        self.body = _as_pipeline(name, "body", body)
        self.until = _CallableAgent(until, run_in_thread=False)
        self.max_iterations = max_iterations
        _check_unique(name, [self.body])
        try:
            # An iteration's output is the next one's input.
            _check_fits(_last(self.body), _first(self.body))
        except PipelineDefinitionError as exc:
            raise PipelineDefinitionError(
                f"loop {name!r}: each iteration's output feeds the next: {exc}"
            ) from None
        super().__init__(
            name, input_type=_first(self.body).input_type, output_type=_last(self.body).output_type
        )

    def pipelines(self) -> list[tuple[str, Pipeline]]:
        return [("body", self.body)]

    def structure(self) -> str:
        return f"{super().structure()}[max={self.max_iterations}]"


# --------------------------------------------------------------------------- map


def _check_concurrency(owner: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PipelineDefinitionError(f"step {owner!r}: concurrency must be an int >= 1")


def _check_merge(owner: str, value: Any) -> None:
    if value in ("error_on_conflict", "discard") or callable(value):
        return
    raise PipelineDefinitionError(
        f"step {owner!r}: context_merge must be 'error_on_conflict', 'discard' or a function, "
        f"got {value!r}"
    )


class Map(ControlStep):
    """Run ``body`` for every item of the input list, at most ``concurrency`` at once; the
    output is the list of results in input order.

    Each item runs on its own copy of the context; ``context_merge`` says how their changes
    come back (:data:`ContextMerge`). A failing item fails the step: no other item starts,
    those running finish (and are committed). Item ``i`` (from 0) commits its steps as
    ``name[i]/step``; a resumed map runs only the items that had not finished.
    """

    __slots__ = ("body", "concurrency", "context_merge")
    kind = "map"

    def __init__(
        self,
        name: str,
        body: Pipeline | Step,
        *,
        concurrency: int = 8,
        context_merge: ContextMerge = "error_on_conflict",
    ) -> None:
        _check_concurrency(name, concurrency)
        _check_merge(name, context_merge)
        self.body = _as_pipeline(name, "body", body)
        self.concurrency = concurrency
        self.context_merge = context_merge
        _check_unique(name, [self.body])
        item = _first(self.body).input_type
        out = _last(self.body).output_type
        super().__init__(
            name,
            input_type=None if _is_unknown(item) else list[item],  # type: ignore[valid-type]
            output_type=None if _is_unknown(out) else list[out],  # type: ignore[valid-type]
        )

    def pipelines(self) -> list[tuple[str, Pipeline]]:
        return [("body", self.body)]


# --------------------------------------------------------------------------- parallel


class Parallel(ControlStep):
    """Run named sub-pipelines concurrently on the same input (at most ``concurrency`` at
    once, all by default).

    The output is a mapping ``{branch: output}`` (its type a ``TypedDict`` of the branches'
    output types), or ``merge(mapping)`` when ``merge`` is given. Each branch runs on its own
    copy of the context; ``context_merge`` says how their changes come back
    (:data:`ContextMerge`). A failing branch fails the step, unless ``on_branch_failure`` is
    ``"ignore"``: then the step succeeds with the branches that did (the others are left out
    of the mapping; all failing still fails). Branch ``b`` commits its steps as
    ``name/b/step``; a resumed parallel runs only the branches that had not finished.
    """

    __slots__ = ("branches", "concurrency", "context_merge", "merge", "on_branch_failure")
    kind = "parallel"

    def __init__(
        self,
        name: str,
        branches: Mapping[str, Pipeline | Step],
        *,
        concurrency: int | None = None,
        merge: Callable[[dict[str, Any]], Any] | None = None,
        context_merge: ContextMerge = "error_on_conflict",
        on_branch_failure: Literal["fail", "ignore"] = "fail",
    ) -> None:
        if not branches:
            raise PipelineDefinitionError(f"parallel {name!r} needs at least one branch")
        _check_concurrency(name, concurrency)
        _check_merge(name, context_merge)
        if on_branch_failure not in ("fail", "ignore"):
            raise PipelineDefinitionError(
                f"parallel {name!r}: on_branch_failure must be 'fail' or 'ignore'"
            )
        if merge is not None and not callable(merge):
            raise PipelineDefinitionError(f"parallel {name!r}: merge must be a function")
        self.branches: dict[str, Pipeline] = {}
        for key, body in branches.items():
            _check_segment(f"parallel {name!r}: branch", key)
            self.branches[key] = _as_pipeline(name, f"branch {key!r}", body)
        _check_unique(name, self.branches.values())
        self.concurrency = concurrency
        self.merge = merge
        self.context_merge = context_merge
        self.on_branch_failure = on_branch_failure
        inputs = [_first(p).input_type for p in self.branches.values()]
        known = [tp for tp in inputs if not _is_unknown(tp)]
        input_type = known[0] if known else None
        for key, pipeline in self.branches.items():
            _check_input(name, input_type, pipeline, f"branch {key!r}")
        output_type: Any = None
        if merge is not None:
            output_type = typing.get_type_hints(merge).get("return") if _hinted(merge) else None
        else:
            fields = {k: _last(p).output_type for k, p in self.branches.items()}
            make_typed_dict: Any = typing.TypedDict  # built at run time from the branches
            output_type = make_typed_dict(
                f"{name}_outputs",
                {k: (Any if _is_unknown(tp) else tp) for k, tp in fields.items()},
                total=on_branch_failure == "fail",
            )
        super().__init__(name, input_type=input_type, output_type=output_type)

    def pipelines(self) -> list[tuple[str, Pipeline]]:
        return list(self.branches.items())

    def structure(self) -> str:
        return f"{super().structure()}[merge={self.merge is not None}]"


def _hinted(fn: Callable[..., Any]) -> bool:
    try:
        typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - an unresolvable annotation means "unknown"
        return False
    return True


# --------------------------------------------------------------------------- human input


class _HumanAgent:
    __slots__ = ("step",)
    cancel_on_stop = True

    def __init__(self, step: Human) -> None:
        self.step = step

    async def run(self, data: Any, *, context: PipelineContext) -> Any:
        from flujo.application.control_flow import run_human

        return await run_human(self.step, data, context)


class Human(Step):
    """Pause the run until a person answers: ``flujo runs approve ID [--input JSON]
    [--reason TEXT]`` (or :meth:`Flujo.approve`) stores the answer, validated against
    ``schema`` (the step's output type; without one the answer is the step's input, i.e. a
    plain approval), and makes the run resumable by any worker; ``flujo runs reject ID
    --reason TEXT`` fails it. A paused run holds no worker and no lease. Who answered and why
    is committed beside the answer (at ``<path>@approval``). Works at any depth of the tree.

    ``expires_in_s``: seconds a person has from the moment the run pauses; a pause still
    unanswered by then is not answered any more: answering it (or resuming the run) ends the
    run ``failed``, saying when it expired. Until then the run stays ``paused`` (listing runs
    changes nothing).
    """

    __slots__ = ("expires_in_s", "prompt", "schema")

    def __init__(
        self,
        name: str,
        *,
        schema: Any = None,
        prompt: str = "",
        expires_in_s: float | None = None,
    ) -> None:
        _check_segment("a human step", name)
        if expires_in_s is not None and (
            isinstance(expires_in_s, bool)
            or not isinstance(expires_in_s, int | float)
            or not expires_in_s > 0
        ):
            raise PipelineDefinitionError(f"human step {name!r}: expires_in_s must be > 0")
        self.schema = schema
        self.prompt = prompt
        self.expires_in_s = expires_in_s
        super().__init__(name, _HumanAgent(self), output_type=schema)

    def structure(self) -> str:
        return f"{self.name}<human>"
