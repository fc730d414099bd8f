"""Branch, loop, map and parallel steps: behaviour, build-time checks, paths, policies and
resume after a failure inside each (the SIGKILL cases are in test_control_flow_durability)."""

from __future__ import annotations

import asyncio
import enum
from pathlib import Path
from typing import Any, Literal

import pytest

from flujo import Flujo, FlujoConfig, PipelineContext, Step
from flujo.config import StateSettings
from flujo.domain.errors import PipelineDefinitionError, ResumeError
from flujo.domain.interfaces import PolicyDecision
from flujo.domain.models import Pipeline, RunStatus, Usage
from flujo.domain.scope import current_step_scope, record_usage
from flujo.plugins.manager import PluginManager
from flujo.state import open_state


class Ctx(PipelineContext):
    trail: list[str] = []
    note: str = ""


def _config(uri: str) -> FlujoConfig:
    return FlujoConfig(state=StateSettings(uri=uri), plugin_manager=PluginManager())


def add(n: int, name: str) -> Step:
    def run(x: int) -> int:
        return x + n

    return Step.from_callable(run, name=name)


async def _run(pipeline: Pipeline | Step, uri: str, data: Any, **kw: Any) -> Any:
    async with Flujo(pipeline, config=_config(uri), **kw) as runner:
        return await runner.run_async(data)


async def _inner(uri: str, run_id: str) -> list[str]:
    state = await open_state(_config(uri))
    try:
        run = await state.get_run(run_id)
        assert run is not None
        return [s.path for s in run.inner_steps]
    finally:
        await state.close()


def _never(x: Any) -> bool:
    return False


# --------------------------------------------------------------------------- branch


async def test_branch_routes_by_a_function_and_commits_each_inner_step_by_path(
    state_uri: str,
) -> None:
    def router(x: int) -> str:
        return "big" if x > 10 else "small"

    branch = Step.branch(
        "route", router, {"big": add(1, "inc") >> add(100, "boost"), "small": add(-1, "dec")}
    )
    result = await _run(add(0, "first") >> branch >> add(0, "last"), state_uri, 50)
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == 151
    assert [s.name for s in result.steps] == ["first", "route", "last"]
    assert await _inner(state_uri, result.run_id) == [
        "route/@router",
        "route/big/inc",
        "route/big/boost",
    ]
    small = await _run(branch, state_uri, 3)
    assert small.output == 2


class Kind(enum.Enum):
    BILLING = "billing"
    PRIVACY = "privacy"


def test_branch_output_type_is_the_union_and_typed_routers_are_checked() -> None:
    def to_str(x: int) -> str:
        return str(x)

    def to_float(x: int) -> float:
        return float(x)

    def pick(x: int) -> Literal["a", "b"]:
        return "a"

    branch = Step.branch("r", pick, {"a": Step.from_callable(to_str), "b": to_float_step()})
    assert branch.output_type == str | float

    def classify(x: int) -> Kind:
        return Kind.BILLING

    with pytest.raises(PipelineDefinitionError, match="'privacy' but no route"):
        Step.branch("r2", classify, {"billing": add(1, "x")})
    Step.branch("r3", classify, {"billing": add(1, "x")}, default=add(2, "y"))

    def takes_str(x: str) -> str:
        return x

    with pytest.raises(PipelineDefinitionError, match="route 'a'"):
        Step.branch("r4", pick, {"a": Step.from_callable(takes_str), "b": add(1, "z")})


def to_float_step() -> Step:
    def to_float(x: int) -> float:
        return float(x)

    return Step.from_callable(to_float)


async def test_branch_by_an_agents_typed_output_and_no_route_fails(state_uri: str) -> None:
    class Classifier:
        output_type = Kind

        async def run(self, data: Any, *, context: Any) -> Kind:
            return Kind.PRIVACY if data < 0 else Kind.BILLING

    branch = Step.branch(
        "route",
        Step("classify", Classifier()),
        {"billing": add(1, "bill"), "privacy": add(-1, "privacy")},
    )
    result = await _run(branch, state_uri, -5)
    assert result.output == -6
    assert await _inner(state_uri, result.run_id) == ["route/classify", "route/privacy/privacy"]

    lonely = Step.branch("route", lambda x: "nowhere", {"a": add(1, "a1")})
    failed = await _run(lonely, state_uri, 1)
    assert failed.status is RunStatus.FAILED
    assert failed.error is not None
    assert "the router chose 'nowhere', which is no route" in failed.error


# --------------------------------------------------------------------------- loop


async def test_loop_feeds_each_output_to_the_next_iteration_until_done(state_uri: str) -> None:
    loop = Step.loop(
        "retry", add(1, "draft") >> add(1, "check"), until=lambda x: x >= 6, max_iterations=5
    )
    result = await _run(loop, state_uri, 0)
    assert result.output == 6
    assert await _inner(state_uri, result.run_id) == [
        "retry#1/draft", "retry#1/check",
        "retry#2/draft", "retry#2/check",
        "retry#3/draft", "retry#3/check",
    ]  # fmt: skip


async def test_loop_past_max_iterations_fails_saying_so(state_uri: str) -> None:
    loop = Step.loop("retry", add(1, "draft"), until=lambda x: False, max_iterations=3)
    result = await _run(loop, state_uri, 0)
    assert result.status is RunStatus.FAILED
    assert result.error == (
        "loop 'retry' did not finish within max_iterations=3: its until condition was still "
        "false after iteration 3"
    )


def test_loop_needs_max_iterations_and_a_body_whose_output_feeds_its_input() -> None:
    with pytest.raises(TypeError):
        Step.loop("l", add(1, "a"), until=_never)  # type: ignore[call-arg]
    with pytest.raises(PipelineDefinitionError, match="max_iterations must be >= 1"):
        Step.loop("l", add(1, "a"), until=_never, max_iterations=0)

    def to_str(x: int) -> str:
        return str(x)

    with pytest.raises(PipelineDefinitionError, match="each iteration's output feeds the next"):
        Step.loop("l", Step.from_callable(to_str), until=_never, max_iterations=2)


# --------------------------------------------------------------------------- map


async def test_map_keeps_input_order_and_respects_its_concurrency(state_uri: str) -> None:
    running = 0
    peak = 0

    async def work(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (10 - x))  # later items finish first
        running -= 1
        return x * 10

    mapped = Step.map("each", Step.from_callable(work), concurrency=3)
    result = await _run(mapped, state_uri, list(range(10)))
    assert result.output == [x * 10 for x in range(10)]
    assert peak == 3
    paths = await _inner(state_uri, result.run_id)
    assert sorted(paths) == sorted(f"each[{i}]/work" for i in range(10))
    assert mapped.input_type == list[int]


async def test_map_of_a_non_list_fails_and_an_empty_list_is_empty(state_uri: str) -> None:
    mapped = Step.map("each", add(1, "one"))
    assert (await _run(mapped, state_uri, [])).output == []
    failed = await _run(mapped, state_uri, "abc")
    assert failed.status is RunStatus.FAILED
    assert failed.error == "map 'each' needs a list as input, got str"


async def test_concurrent_scopes_context_conflicts_are_errors_unless_merged(
    state_uri: str,
) -> None:
    def note(x: int, context: Ctx) -> int:
        context.note = f"item {x}"
        return x

    def trail(x: int, context: Ctx) -> int:
        context.trail = ["same"]
        return x

    conflict = Step.map("each", Step.from_callable(note))
    failed = await _run(conflict, state_uri, [1, 2], context_model=Ctx)
    assert failed.status is RunStatus.FAILED
    assert failed.error is not None
    assert "both changed context field 'note'" in failed.error

    agree = Step.map("each", Step.from_callable(trail))
    assert (await _run(agree, state_uri, [1, 2], context_model=Ctx)).succeeded

    def last_wins(context: Ctx, scopes: dict[str, Ctx]) -> None:
        context.note = ",".join(s.note for s in scopes.values())

    read = Step.from_callable(lambda x, context: context.note, name="read")
    merged = Step.map("each", Step.from_callable(note), context_merge=last_wins) >> read
    out = await _run(merged, state_uri, [1, 2], context_model=Ctx)
    assert out.output == "item 1,item 2"
    discarded = Step.map("each", Step.from_callable(note), context_merge="discard")
    assert (await _run(discarded, state_uri, [1, 2], context_model=Ctx)).succeeded


# --------------------------------------------------------------------------- parallel


async def test_parallel_outputs_a_typed_mapping_or_a_merge(state_uri: str) -> None:
    def to_str(x: int) -> str:
        return str(x)

    par = Step.parallel("research", {"web": add(1, "web_hit"), "docs": Step.from_callable(to_str)})
    result = await _run(par, state_uri, 1)
    assert result.output == {"web": 2, "docs": "1"}
    assert par.output_type.__annotations__ == {"web": int, "docs": str}
    assert sorted(await _inner(state_uri, result.run_id)) == [
        "research/docs/to_str", "research/web/web_hit",
    ]  # fmt: skip

    def total(outputs: dict[str, Any]) -> int:
        return sum(outputs.values())

    summed = Step.parallel("sum", {"a": add(1, "a1"), "b": add(2, "b1")}, merge=total)
    assert summed.output_type is int
    assert (await _run(summed, state_uri, 10)).output == 23


async def test_a_failing_branch_fails_the_parallel_unless_ignored(state_uri: str) -> None:
    def boom(x: int) -> int:
        raise ValueError("no luck")

    branches = {"ok": add(1, "fine"), "bad": Step.from_callable(boom)}
    failed = await _run(Step.parallel("p", branches), state_uri, 1)
    assert failed.status is RunStatus.FAILED
    assert failed.error == "step 'p/bad/boom': ValueError: no luck"
    ignored = await _run(Step.parallel("p", branches, on_branch_failure="ignore"), state_uri, 1)
    assert ignored.status is RunStatus.SUCCEEDED
    assert ignored.output == {"ok": 2}


# --------------------------------------------------------------------------- the tree


def test_names_are_unique_in_the_whole_tree_and_paths_stay_parseable() -> None:
    with pytest.raises(PipelineDefinitionError, match="two steps are named 'a'"):
        add(1, "a") >> Step.loop("l", add(1, "a"), until=_never, max_iterations=2)
    with pytest.raises(PipelineDefinitionError, match="named 'x'"):
        Step.parallel("p", {"one": add(1, "x"), "two": add(2, "x")})
    with pytest.raises(PipelineDefinitionError, match="may not contain '/'"):
        Step.map("m", add(1, "a/b"))
    with pytest.raises(PipelineDefinitionError, match="may not contain '#'"):
        Step.branch("b", lambda x: "k", {"k#1": add(1, "q")})
    nested = Step.branch(
        "outer", lambda x: "go",
        {"go": Step.loop("inner", Step.parallel("par", {"a": add(1, "leaf")})
                                          >> Step.from_callable(lambda m: 0, name="flat"),
                         until=_never, max_iterations=2)},
    )  # fmt: skip
    with pytest.raises(PipelineDefinitionError, match="two steps are named 'leaf'"):
        nested >> add(1, "leaf")


def test_the_fingerprint_covers_the_tree() -> None:
    def tree(second: str) -> Pipeline:
        return add(0, "first") >> Step.branch(
            "route", lambda x: "a", {"a": add(1, "one") >> add(1, second)}
        )

    assert tree("two").version == tree("two").version
    assert tree("two").version != tree("three").version
    plain = add(0, "first") >> add(0, "route")
    assert plain.version != tree("two").version


async def test_resuming_with_a_changed_tree_is_refused(state_uri: str) -> None:
    def boom(x: int) -> int:
        raise ValueError("down")

    before = Step.branch("route", lambda x: "a", {"a": Step.from_callable(boom)})
    failed = await _run(before, state_uri, 1)
    after = Step.branch("route", lambda x: "a", {"a": add(1, "fixed")})
    async with Flujo(after, config=_config(state_uri)) as runner:
        with pytest.raises(ResumeError, match="pipeline version"):
            await runner.resume_async(failed.run_id)


async def test_a_composed_tree_resumes_after_a_failure_without_rerunning_what_finished(
    state_uri: str, tmp_path: Path
) -> None:
    """A parallel inside a loop inside a branch: a failure deep inside, then resume."""
    calls: list[str] = []
    broken = {"on": True}

    def counted(name: str, fail: bool = False) -> Step:
        def run(x: int) -> int:
            scope = current_step_scope()
            assert scope is not None
            calls.append(scope.step_name)
            if fail and broken["on"] and scope.step_name.startswith("route/go/retry#2/"):
                raise RuntimeError("flaky")
            return x + 1

        return Step.from_callable(run, name=name)

    tree = Step.branch(
        "route", lambda x: "go",
        {"go": Step.loop(
            "retry",
            Step.parallel("fan", {"a": counted("a1"), "b": counted("b1", fail=True)},
                          merge=lambda m: max(m.values())),
            until=lambda x: x >= 3, max_iterations=4,
        )},
    )  # fmt: skip
    async with Flujo(tree, config=_config(state_uri)) as runner:
        failed = await runner.run_async(0)
        assert failed.status is RunStatus.FAILED
        assert failed.error == "step 'route/go/retry#2/fan/b/b1': RuntimeError: flaky"
        broken["on"] = False
        before = list(calls)
        resumed = await runner.resume_async(failed.run_id)
    assert resumed.status is RunStatus.SUCCEEDED, resumed.error
    assert resumed.output == 3
    rerun = calls[len(before) :]
    # Iteration 1 and branch a of iteration 2 had finished (a running sibling of a failing
    # branch finishes and is committed): only b of iteration 2 re-ran.
    assert sorted(rerun) == [
        "route/go/retry#2/fan/b/b1", "route/go/retry#3/fan/a/a1", "route/go/retry#3/fan/b/b1",
    ]  # fmt: skip


# --------------------------------------------------------------------------- plugins inside


async def test_policies_run_for_every_inner_step_with_its_path(state_uri: str) -> None:
    seen: list[tuple[str, str]] = []

    class Watch:
        name = "watch"

        def inspect_input(self, context: Any, data: Any) -> tuple[PolicyDecision, Any]:
            scope = current_step_scope()
            assert scope is not None
            seen.append(("input", scope.step_name))
            return PolicyDecision.ALLOW, data

        def inspect_tool_call(self, context: Any, tool_name: str, args: Any) -> PolicyDecision:
            return PolicyDecision.ALLOW

    class Deny(Watch):
        name = "deny"

        def inspect_input(self, context: Any, data: Any) -> tuple[PolicyDecision, Any]:
            scope = current_step_scope()
            assert scope is not None
            if scope.step_name == "each[1]/one":
                return PolicyDecision.DENY, data
            return PolicyDecision.ALLOW, data

    mapped = Step.map("each", add(1, "one"), concurrency=1)
    result = await _run(mapped, state_uri, [1, 2], policies=[Watch()])
    assert result.succeeded
    assert seen == [("input", "each"), ("input", "each[0]/one"), ("input", "each[1]/one")]
    blocked = await _run(mapped, state_uri, [1, 2], policies=[Deny()])
    assert blocked.status is RunStatus.BLOCKED
    assert blocked.error is not None
    assert "each[1]/one" in blocked.error


async def test_observers_see_inner_steps_by_path_and_the_whole_run_once(state_uri: str) -> None:
    """Step observers (memory's index_steps) get each inner step by path; run observers
    (evaluations) get the run's inner steps, each path once after a resume re-ran one."""
    completed: list[str] = []
    started: list[str] = []
    finalized: list[list[str]] = []

    class Watcher:
        def flujo_step_started(self, event: Any) -> None:
            started.append(event.step_name)

        def flujo_step_completed(self, event: Any) -> None:
            completed.append(event.step.name)

        def flujo_run_finalized(self, event: Any) -> None:
            finalized.append([f"{s.path}:{s.result.status.value}" for s in event.run.inner_steps])

    broken = {"on": True}

    def flaky(x: int) -> int:
        if broken["on"]:
            raise RuntimeError("down")
        return x

    manager = PluginManager()
    manager.register(Watcher(), "watcher")
    config = FlujoConfig(state=StateSettings(uri=state_uri), plugin_manager=manager)
    par = Step.parallel("p", {"a": add(1, "a1"), "b": Step.from_callable(flaky)})
    async with Flujo(par, config=config) as runner:
        failed = await runner.run_async(1)
        broken["on"] = False
        resumed = await runner.resume_async(failed.run_id)
    assert resumed.succeeded
    assert sorted(completed) == ["p", "p", "p/a/a1", "p/b/flaky", "p/b/flaky"]
    assert sorted(started) == sorted(completed)
    assert sorted(finalized[-1]) == ["p/a/a1:succeeded", "p/b/flaky:succeeded"]


async def test_inner_usage_counts_once_and_towards_the_runs_limits(state_uri: str) -> None:
    from flujo import UsageLimits
    from flujo.domain.models import Usage
    from flujo.domain.scope import record_usage

    def spend(x: int) -> int:
        record_usage(Usage(input_tokens=10, requests=1))
        return x

    mapped = Step.map("each", Step.from_callable(spend), concurrency=1)
    ok = await _run(mapped, state_uri, [1, 2, 3])
    assert ok.usage.requests == 3
    assert ok.steps[0].usage.requests == 3
    capped = await _run(mapped, state_uri, [1, 2, 3, 4], usage_limits=UsageLimits(requests=2))
    assert capped.status is RunStatus.LIMIT_EXCEEDED
    assert capped.error is not None
    assert "requests 3 > limit 2" in capped.error
    assert capped.usage.requests == 3


async def test_a_stop_inside_a_map_interrupts_and_the_resume_skips_finished_items(
    state_uri: str,
) -> None:
    calls: list[str] = []
    holder: dict[str, Flujo] = {}

    async def work(x: int) -> int:
        scope = current_step_scope()
        assert scope is not None
        calls.append(scope.step_name)
        if x == 1 and "stopper" in holder:
            holder.pop("stopper").request_stop()
            await asyncio.sleep(30)  # cancelled by the stop request
        record_usage(Usage(input_tokens=10, requests=1))
        return x * 2

    mapped = Step.map("each", Step.from_callable(work), concurrency=1)
    async with Flujo(mapped, config=_config(state_uri)) as runner:
        holder["stopper"] = runner
        stopped = await runner.run_async([0, 1, 2])
    assert stopped.status is RunStatus.INTERRUPTED
    assert calls == ["each[0]/work", "each[1]/work"]
    async with Flujo(mapped, config=_config(state_uri)) as again:
        resumed = await again.resume_async(stopped.run_id)
    assert resumed.status is RunStatus.SUCCEEDED, resumed.error
    assert resumed.output == [0, 2, 4]
    assert calls[2:] == ["each[1]/work", "each[2]/work"]
    # The map's row holds the item found committed too, as if it had not stopped.
    assert resumed.steps[0].usage == Usage(input_tokens=30, requests=3)
    # The interrupt kept the total item 0's commit stored: the run's total counts it.
    assert stopped.usage == Usage(input_tokens=10, requests=1)
    assert resumed.usage == Usage(input_tokens=30, requests=3)
    state = await open_state(_config(state_uri))
    try:
        stored = await state.get_run(stopped.run_id)
    finally:
        await state.close()
    assert stored is not None
    assert stored.usage == Usage(input_tokens=30, requests=3)


async def test_a_usage_limit_stops_a_run_interrupted_inside_a_map_and_resumed(
    state_uri: str,
) -> None:
    """The limit is checked against the run's total: the items committed before a stop
    count after the resume, so an interrupted run cannot spend past its limit."""
    from flujo import UsageLimits

    holder: dict[str, Flujo] = {}

    async def spend(x: int) -> int:
        if x == 1 and "stopper" in holder:
            holder.pop("stopper").request_stop()
            await asyncio.sleep(30)  # cancelled by the stop request
        record_usage(Usage(input_tokens=10, requests=1))
        return x

    mapped = Step.map("each", Step.from_callable(spend), concurrency=1)
    limits = UsageLimits(requests=2)
    async with Flujo(mapped, config=_config(state_uri), usage_limits=limits) as runner:
        holder["stopper"] = runner
        stopped = await runner.run_async([0, 1, 2])
    assert stopped.status is RunStatus.INTERRUPTED
    async with Flujo(mapped, config=_config(state_uri), usage_limits=limits) as again:
        resumed = await again.resume_async(stopped.run_id)
    # As the run never interrupted ends: item 2 is the third request.
    assert resumed.status is RunStatus.LIMIT_EXCEEDED, resumed.error
    assert resumed.error is not None
    assert "requests 3 > limit 2" in resumed.error
    assert resumed.usage == Usage(input_tokens=30, requests=3)


async def test_a_stop_inside_a_loop_keeps_the_context_its_iterations_committed(
    state_uri: str,
) -> None:
    """A loop's iterations commit the run's context as they finish: the interrupt stores
    the last of them, so the resume, skipping those iterations, still has what they did."""
    holder: dict[str, Flujo] = {}

    async def work(x: int, context: Ctx) -> int:
        if x == 1 and "stopper" in holder:
            holder.pop("stopper").request_stop()
            await asyncio.sleep(30)  # cancelled by the stop request
        context.trail = [*context.trail, str(x)]
        record_usage(Usage(requests=1))
        return x + 1

    loop = Step.loop("l", Step.from_callable(work), until=lambda x: x >= 3, max_iterations=5)
    async with Flujo(loop, config=_config(state_uri), context_model=Ctx) as runner:
        holder["stopper"] = runner
        stopped = await runner.run_async(0)
    assert stopped.status is RunStatus.INTERRUPTED
    async with Flujo(loop, config=_config(state_uri), context_model=Ctx) as again:
        resumed = await again.resume_async(stopped.run_id)
    assert resumed.status is RunStatus.SUCCEEDED, resumed.error
    assert resumed.output == 3
    assert resumed.usage == Usage(requests=3)
    state = await open_state(_config(state_uri))
    try:
        stored = await state.get_run(stopped.run_id)
    finally:
        await state.close()
    assert stored is not None
    assert stored.context["trail"] == ["0", "1", "2"]


async def test_items_that_finished_as_a_stop_came_are_kept(state_uri: str) -> None:
    """The items that finish in the turn a stop request arrives wait for their (group)
    commit when the stop cancels the map: they finished, so they are committed all the same,
    and the resume runs only the item the stop cut short."""
    calls: list[str] = []
    holder: dict[str, Flujo] = {}

    async def work(x: int) -> int:
        scope = current_step_scope()
        assert scope is not None
        calls.append(scope.step_name)
        if x == 0 and "stopper" in holder:
            holder.pop("stopper").request_stop()  # the cancel lands before the items' commit
        elif x == 1 and len(calls) <= 3:
            await asyncio.sleep(30)  # cancelled by the stop request
        return x * 2

    mapped = Step.map("each", Step.from_callable(work), concurrency=3)
    async with Flujo(mapped, config=_config(state_uri)) as runner:
        holder["stopper"] = runner
        stopped = await runner.run_async([0, 1, 2])
    assert stopped.status is RunStatus.INTERRUPTED
    assert sorted(calls) == ["each[0]/work", "each[1]/work", "each[2]/work"]
    async with Flujo(mapped, config=_config(state_uri)) as again:
        resumed = await again.resume_async(stopped.run_id)
    assert resumed.status is RunStatus.SUCCEEDED, resumed.error
    assert resumed.output == [0, 2, 4]
    assert calls[3:] == ["each[1]/work"], "a finished item ran again"
