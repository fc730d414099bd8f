"""The seam an engine uses to run a control-flow step's parts elsewhere
(:meth:`Flujo.execute_part_async`): each call executes one branch, item, iteration, route or
router (or runs up to a construct, ``enter``) and commits it by path; a last call executes the
whole step, finding every part committed. Nothing is executed twice, nothing outside the part
runs, and the outputs are those of a local run. On SQLite and PostgreSQL, no engine involved:
the calls are made here in the order an engine's workflow makes them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from flujo import Flujo, FlujoConfig, Step, hookimpl
from flujo.config import StateSettings
from flujo.domain.errors import UserError
from flujo.domain.events import StepStarted
from flujo.domain.models import Pipeline, RunStatus, StepStatus, Usage, UsageLimits
from flujo.domain.scope import current_step_scope
from flujo.plugins.manager import PluginManager

OWNER = "engine:test"


def _config(uri: str) -> FlujoConfig:
    return FlujoConfig(state=StateSettings(uri=uri), plugin_manager=PluginManager())


class Calls:
    """Counts executions by path (a step's scope names it)."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def step(self, name: str, n: int = 1) -> Step:
        def run(x: int) -> int:
            scope = current_step_scope()
            assert scope is not None
            self.seen[scope.step_name] += 1
            return x + n

        return Step.from_callable(run, name=name)

    def same(self, name: str) -> Step:
        """A step passing its input on (any type), counted."""

        def run(x: Any) -> Any:
            self.seen[name] += 1
            return x

        return Step.from_callable(run, name=name)


async def _created(runner: Flujo, data: Any) -> str:
    """A run stored for an engine, its first (plain) step executed."""
    created = await runner.run_async(data, until=0, owner=OWNER)
    first = await runner.resume_async(created.run_id, until=1, owner=OWNER)
    assert first.status is RunStatus.RUNNING
    return created.run_id


async def test_parallel_branches_run_one_per_call_and_the_join_merges(state_uri: str) -> None:
    calls = Calls()
    pipeline = (
        calls.step("first")
        >> Step.parallel(
            "fan",
            {"a": calls.step("a1") >> calls.step("a2", 10), "b": calls.step("b1", 100)},
            merge=lambda m: m["a"] + m["b"],
        )
        >> calls.step("last")
    )
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        run_id = await _created(runner, 1)
        # Up to the parallel: nothing of it runs; the lease is taken once for its parts.
        probe = await runner.execute_part_async(run_id, 1, "fan", enter=True, owner=OWNER)
        assert (probe.status, probe.next_step) == (RunStatus.RUNNING, 1)
        assert probe.lease is not None
        assert calls.seen == {"first": 1}
        epoch = probe.lease.epoch
        a, b = await asyncio.gather(
            runner.execute_part_async(run_id, 1, "fan/a", owner=OWNER, lease_epoch=epoch),
            runner.execute_part_async(run_id, 1, "fan/b", owner=OWNER, lease_epoch=epoch),
        )
        assert (a.status, a.next_step, b.status, b.next_step) == (
            RunStatus.RUNNING,
            1,
            RunStatus.RUNNING,
            1,
        )
        assert calls.seen == {"first": 1, "fan/a/a1": 1, "fan/a/a2": 1, "fan/b/b1": 1}
        stored = await runner.runtime.state.get_run(run_id)
        assert stored is not None
        assert stored.status is RunStatus.RUNNING
        assert stored.current_step == 1  # the parallel itself is not committed by a part
        assert {s.path for s in stored.inner_steps} == {"fan/a/a1", "fan/a/a2", "fan/b/b1"}
        # Again (a retried activity): committed, so not executed again.
        again = await runner.execute_part_async(run_id, 1, "fan/a", owner=OWNER, lease_epoch=epoch)
        assert again.status is RunStatus.RUNNING
        # The join: every branch found committed, merged, the step committed.
        join = await runner.execute_part_async(run_id, 1, owner=OWNER)
        assert (join.status, join.next_step) == (RunStatus.RUNNING, 2)
        done = await runner.resume_async(run_id, until=3, owner=OWNER)
    assert done.status is RunStatus.SUCCEEDED
    assert done.output == (1 + 1 + 1 + 10) + (1 + 1 + 100) + 1
    assert calls.seen == {"first": 1, "fan/a/a1": 1, "fan/a/a2": 1, "fan/b/b1": 1, "last": 1}


async def test_map_items_one_per_call_in_any_order_output_in_input_order(state_uri: str) -> None:
    calls = Calls()
    pipeline = calls.same("first") >> Step.map("each", calls.step("work", 10), concurrency=2)
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        run_id = await _created(runner, [1, 2, 3])
        probe = await runner.execute_part_async(run_id, 1, "each", enter=True, owner=OWNER)
        assert probe.part is not None
        assert probe.part.items == {"each": 3}  # what the engine fans out on
        assert probe.lease is not None
        epoch = probe.lease.epoch
        for i in (2, 0, 1):  # a part never completes the map: the join does
            part = await runner.execute_part_async(
                run_id, 1, f"each[{i}]", owner=OWNER, lease_epoch=epoch
            )
            assert (part.status, part.next_step) == (RunStatus.RUNNING, 1)
            assert calls.seen[f"each[{i}]/work"] == 1
        join = await runner.execute_part_async(run_id, 1, owner=OWNER)
        assert (join.status, join.next_step) == (RunStatus.SUCCEEDED, 1)
        run = await runner.runtime.state.get_run(run_id)
    assert run is not None
    assert run.output == [11, 12, 13]
    assert calls.seen == {"first": 1, "each[0]/work": 1, "each[1]/work": 1, "each[2]/work": 1}


async def test_loop_iterations_one_per_call_report_whether_the_loop_is_done(
    state_uri: str,
) -> None:
    calls = Calls()
    pipeline = calls.step("first", 0) >> Step.loop(
        "retry", calls.step("draft"), until=lambda x: x >= 3, max_iterations=5
    )
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        run_id = await _created(runner, 1)
        one = await runner.execute_part_async(run_id, 1, "retry#1", owner=OWNER)
        assert one.part is not None
        assert one.part.finished == {"retry#1": False}
        assert one.lease is not None
        assert calls.seen == {"first": 1, "retry#1/draft": 1}  # not iteration 2
        two = await runner.execute_part_async(
            run_id, 1, "retry#2", owner=OWNER, lease_epoch=one.lease.epoch
        )
        assert two.part is not None
        assert two.part.finished == {"retry#1": False, "retry#2": True}
        assert (two.status, two.next_step) == (RunStatus.RUNNING, 1)
        join = await runner.execute_part_async(run_id, 1, owner=OWNER)
        assert (join.status, join.next_step) == (RunStatus.SUCCEEDED, 1)
        run = await runner.runtime.state.get_run(run_id)
    assert run is not None
    assert run.output == 3
    assert calls.seen == {"first": 1, "retry#1/draft": 1, "retry#2/draft": 1}


async def test_branch_router_then_the_route_one_call_each(state_uri: str) -> None:
    calls = Calls()
    pipeline = calls.step("first", 0) >> Step.branch(
        "route",
        lambda x: "big" if x > 1 else "small",
        {"big": calls.step("b1") >> calls.step("b2"), "small": calls.step("s1")},
    )
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        run_id = await _created(runner, 5)
        decided = await runner.execute_part_async(run_id, 1, "route/@router", owner=OWNER)
        assert decided.part is not None
        assert decided.part.routes == {"route": "big"}
        assert decided.lease is not None
        assert calls.seen == {"first": 1}  # the route is the next call's
        taken = await runner.execute_part_async(
            run_id, 1, "route/big", owner=OWNER, lease_epoch=decided.lease.epoch
        )
        assert (taken.status, taken.next_step) == (RunStatus.RUNNING, 1)
        join = await runner.execute_part_async(run_id, 1, owner=OWNER)
        assert (join.status, join.next_step) == (RunStatus.SUCCEEDED, 1)
        run = await runner.runtime.state.get_run(run_id)
    assert run is not None
    assert run.output == 7
    assert calls.seen == {"first": 1, "route/big/b1": 1, "route/big/b2": 1}


async def test_a_parallel_inside_a_loop_inside_a_branch_part_by_part(state_uri: str) -> None:
    calls = Calls()
    body = Step.parallel(
        "fan",
        {"x": calls.step("x1"), "y": calls.step("y1", 2)},
        merge=lambda m: max(m.values()),
    ) >> calls.step("check", 0)
    loop = Step.loop("retry", body, until=lambda v: v >= 5, max_iterations=4)
    pipeline = calls.step("first", 0) >> Step.branch(
        "route", lambda v: "go", {"go": loop, "stop": calls.step("never")}
    )
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        run_id = await _created(runner, 1)
        router = await runner.execute_part_async(run_id, 1, "route/@router", owner=OWNER)
        assert router.part is not None
        assert router.part.routes == {"route": "go"}
        assert router.lease is not None
        epoch = router.lease.epoch
        iteration = 0
        while True:
            iteration += 1
            where = f"route/go/retry#{iteration}"
            probe = await runner.execute_part_async(
                run_id, 1, f"{where}/fan", enter=True, owner=OWNER, lease_epoch=epoch
            )
            assert probe.status is RunStatus.RUNNING
            for key in ("x", "y"):
                await runner.execute_part_async(
                    run_id, 1, f"{where}/fan/{key}", owner=OWNER, lease_epoch=epoch
                )
            joined = await runner.execute_part_async(
                run_id, 1, where, owner=OWNER, lease_epoch=epoch
            )
            assert joined.part is not None
            if joined.part.finished[where]:
                break
            assert iteration < 4
        assert (joined.status, joined.next_step) == (RunStatus.RUNNING, 1)
        join = await runner.execute_part_async(run_id, 1, owner=OWNER)
        assert (join.status, join.next_step) == (RunStatus.SUCCEEDED, 1)
        run = await runner.runtime.state.get_run(run_id)
    assert run is not None
    assert run.output == 5  # 1 -> 3 -> 5: each iteration's y1 adds 2
    assert iteration == 2
    for n in range(1, iteration + 1):
        for path in ("fan/x/x1", "fan/y/y1", "check"):
            assert calls.seen[f"route/go/retry#{n}/{path}"] == 1
    assert calls.seen["first"] == 1
    assert "route/stop/never" not in calls.seen


async def test_a_human_step_inside_a_part_waits_and_the_join_pauses_the_run(
    state_uri: str,
) -> None:
    calls = Calls()
    pipeline = calls.step("first", 0) >> Step.parallel(
        "fan",
        {"a": Step.human("check", prompt="ok?") >> calls.step("a1"), "b": calls.step("b1")},
        merge=lambda m: m["a"] + m["b"],
    )
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        run_id = await _created(runner, 1)
        probe = await runner.execute_part_async(run_id, 1, "fan", enter=True, owner=OWNER)
        assert probe.lease is not None
        epoch = probe.lease.epoch
        a = await runner.execute_part_async(run_id, 1, "fan/a", owner=OWNER, lease_epoch=epoch)
        b = await runner.execute_part_async(run_id, 1, "fan/b", owner=OWNER, lease_epoch=epoch)
        assert a.part is not None
        assert a.part.paused  # the part waits; its sibling was not disturbed
        assert a.status is RunStatus.RUNNING
        assert b.part is not None
        assert not b.part.paused
        stored = await runner.runtime.state.get_run(run_id)
        assert stored is not None
        assert stored.status is RunStatus.RUNNING
        join = await runner.execute_part_async(run_id, 1, owner=OWNER)
        assert join.status is RunStatus.PAUSED  # now the run waits, answerable as always
        await runner.approve_async(run_id, 5)
        again = await runner.execute_part_async(run_id, 1, "fan/a", owner=OWNER)
        assert again.part is not None
        assert not again.part.paused
        done = await runner.execute_part_async(run_id, 1, owner=OWNER)
        assert done.status is RunStatus.SUCCEEDED
        run = await runner.runtime.state.get_run(run_id)
    assert run is not None
    assert run.output == (5 + 1) + (1 + 1)
    assert calls.seen == {"first": 1, "fan/a/a1": 1, "fan/b/b1": 1}


async def test_a_failing_part_fails_the_run_as_a_local_run_does(state_uri: str) -> None:
    def boom(x: int) -> int:
        raise ValueError("no good")

    calls = Calls()
    pipeline = calls.same("first") >> Step.map("each", Step.from_callable(boom))
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        run_id = await _created(runner, [1, 2])
        probe = await runner.execute_part_async(run_id, 1, "each", enter=True, owner=OWNER)
        assert probe.lease is not None
        failed = await runner.execute_part_async(
            run_id, 1, "each[1]", owner=OWNER, lease_epoch=probe.lease.epoch
        )
        assert failed.status is RunStatus.FAILED
        assert failed.error is not None
        assert "each[1]/boom" in failed.error
        # A sibling arriving after the end reports the end; it executes nothing.
        late = await runner.execute_part_async(
            run_id, 1, "each[0]", owner=OWNER, lease_epoch=probe.lease.epoch
        )
        assert late.status is RunStatus.FAILED
        run = await runner.runtime.state.get_run(run_id)
    assert run is not None
    assert run.steps[1].status is StepStatus.FAILED
    assert [s.path for s in run.inner_steps] == ["each[1]/boom"]


async def test_usage_given_by_the_engine_is_the_base_and_what_a_part_spent_is_reported(
    state_uri: str,
) -> None:
    class Spend:
        async def run(self, data: int, *, context: Any) -> int:
            scope = current_step_scope()
            assert scope is not None
            scope.usage.add(Usage(input_tokens=7, requests=1))
            return data

    pipeline = Step.from_callable(lambda x: x, name="first") >> Step.parallel(
        "fan", {"a": Step("a1", Spend()), "b": Step("b1", Spend())}
    )
    async with Flujo(Pipeline(pipeline.steps), config=_config(state_uri)) as runner:
        run_id = await _created(runner, 1)
        probe = await runner.execute_part_async(run_id, 1, "fan", enter=True, owner=OWNER)
        assert probe.lease is not None
        epoch = probe.lease.epoch
        spent = Usage()
        for key in ("a", "b"):
            part = await runner.execute_part_async(
                run_id, 1, f"fan/{key}", owner=OWNER, lease_epoch=epoch, usage=Usage()
            )
            assert part.part is not None
            assert part.part.spent == Usage(input_tokens=7, requests=1)
            spent.add(part.part.spent)
        join = await runner.execute_part_async(run_id, 1, owner=OWNER, usage=spent)
        assert join.status is RunStatus.SUCCEEDED
        run = await runner.runtime.state.get_run(run_id)
    assert run is not None
    assert run.usage == Usage(input_tokens=14, requests=2)


async def test_parts_within_the_limit_alone_over_it_together_end_the_run_at_the_join(
    state_uri: str,
) -> None:
    """Parts running at once do not see each other's usage; the join counts them all (the
    usage the engine adds up) and ends the run ``limit_exceeded``: never fail open."""

    class Spend:
        async def run(self, data: int, *, context: Any) -> int:
            scope = current_step_scope()
            assert scope is not None
            scope.usage.add(Usage(input_tokens=40))
            return data

    pipeline = Step.from_callable(lambda x: x, name="first") >> Step.parallel(
        "fan", {k: Step(f"{k}1", Spend()) for k in "abc"}
    )
    async with Flujo(
        pipeline, config=_config(state_uri), usage_limits=UsageLimits(total_tokens=100)
    ) as runner:
        run_id = await _created(runner, 1)
        probe = await runner.execute_part_async(run_id, 1, "fan", enter=True, owner=OWNER)
        assert probe.lease is not None
        spent = Usage()
        for key in "abc":  # each starts from the same base, as concurrent activities do
            part = await runner.execute_part_async(
                run_id, 1, f"fan/{key}", owner=OWNER, lease_epoch=probe.lease.epoch, usage=Usage()
            )
            assert part.status is RunStatus.RUNNING
            assert part.part is not None
            spent.add(part.part.spent)
        join = await runner.execute_part_async(run_id, 1, owner=OWNER, usage=spent)
    assert join.status is RunStatus.LIMIT_EXCEEDED
    assert join.error == "usage limit exceeded: total_tokens 120 > limit 100"


async def test_a_part_names_a_scope_of_the_step(state_uri: str) -> None:
    """A path inside the step but naming none of its scopes runs none of it; a path outside
    the step is refused (it would otherwise run the whole step as a part)."""
    calls = Calls()
    pipeline = calls.step("first", 0) >> Step.parallel(
        "fan", {"a": calls.step("a1"), "b": calls.step("b1")}
    )
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        run_id = await _created(runner, 1)
        part = await runner.execute_part_async(run_id, 1, "fan/c", owner=OWNER)
        assert (part.status, part.next_step) == (RunStatus.RUNNING, 1)
        for outside in ("fanfare", "first", "first/x"):
            with pytest.raises(UserError, match=f"part {outside!r} is not inside step 'fan'"):
                await runner.execute_part_async(run_id, 1, outside, owner=OWNER)
        for index in (2, -1):
            with pytest.raises(UserError, match=f"the pipeline has no step {index} "):
                await runner.execute_part_async(run_id, index, "fan/a", owner=OWNER)
        run = await runner.runtime.state.get_run(run_id)
    assert run is not None
    assert calls.seen == {"first": 1}
    assert run.inner_steps == []


class _Spans:
    """A step wrapper that records how each step's span ended (the error it saw, if any)."""

    def __init__(self) -> None:
        self.ended: dict[str, str | None] = {}

    @hookimpl
    def flujo_wrap_step(self, event: StepStarted) -> Any:
        @contextlib.contextmanager
        def span() -> Iterator[None]:
            try:
                yield
            except BaseException as exc:
                self.ended[event.step_name] = type(exc).__name__
                raise
            self.ended[event.step_name] = None

        return span()


async def test_a_part_leaves_the_spans_of_the_constructs_it_passes_through_unfailed(
    state_uri: str,
) -> None:
    """Stopping at another part's scope is not an error of the constructs on the way: their
    step wrappers (tracing spans) end without one."""
    calls = Calls()
    spans = _Spans()
    manager = PluginManager()
    assert manager.register(spans, "spans").status == "ok"
    pipeline = calls.step("first", 0) >> Step.loop(
        "retry",
        Step.parallel("fan", {"a": calls.step("a1"), "b": calls.step("b1")}, merge=max),
        until=lambda m: True,
        max_iterations=2,
    )
    config = FlujoConfig(state=StateSettings(uri=state_uri), plugin_manager=manager)
    async with Flujo(pipeline, config=config) as runner:
        run_id = await _created(runner, 1)
        part = await runner.execute_part_async(run_id, 1, "retry#1/fan/a", owner=OWNER)
    assert part.status is RunStatus.RUNNING
    assert spans.ended == {
        "first": None,
        "retry": None,
        "retry#1/fan": None,
        "retry#1/fan/a/a1": None,
    }


class _Spend:
    """An agent spending ``tokens`` input tokens and one request, passing its input on."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens

    async def run(self, data: Any, *, context: Any) -> Any:
        scope = current_step_scope()
        assert scope is not None
        scope.usage.add(Usage(input_tokens=self.tokens, requests=1))
        return data


def _spending() -> Pipeline:
    """A parallel holding a map, then a map: every construct's row sums its inner steps."""
    fan = Step.parallel(
        "fan",
        {
            "a": Step("a1", _Spend(7)),
            "b": Step("b1", _Spend(1)) >> Step.map("each", Step("w", _Spend(5))),
        },
        merge=lambda m: m["a"],
    )
    return Pipeline(
        (
            Step.from_callable(lambda x: x, name="first")
            >> fan
            >> Step.map("items", Step("v", _Spend(3)), concurrency=1)
        ).steps
    )


def _usages(run: Any) -> tuple[Any, ...]:
    return (
        [(s.name, s.usage) for s in run.steps],
        sorted((s.path, s.result.usage.to_dict()) for s in run.inner_steps),
        run.usage,
    )


async def test_a_construct_row_holds_the_usage_of_its_parts_as_on_a_local_run(
    state_uri: str,
) -> None:
    """The join finds its parts committed: the construct's row (a nested one's too) still
    sums every inner step's usage, as a local run's does; the run's total counts each once."""
    async with Flujo(_spending(), config=_config(state_uri)) as runner:
        local = await runner.run_async([1, 2])
        assert local.status is RunStatus.SUCCEEDED
        expected = await runner.runtime.state.get_run(local.run_id)

        run_id = await _created(runner, [1, 2])
        probe = await runner.execute_part_async(run_id, 1, "fan", enter=True, owner=OWNER)
        assert probe.lease is not None
        epoch = probe.lease.epoch
        spent = Usage()
        spent.add(probe.base)

        async def part(index: int, path: str, enter: bool = False) -> Any:
            done = await runner.execute_part_async(
                run_id, index, path, owner=OWNER, enter=enter, lease_epoch=epoch, usage=Usage()
            )
            assert done.status is RunStatus.RUNNING
            assert done.part is not None
            spent.add(done.part.spent)
            return done.part

        await part(1, "fan/a")
        assert (await part(1, "fan/b/each", enter=True)).items == {"fan/b/each": 2}
        await part(1, "fan/b/each[1]")
        await part(1, "fan/b/each[0]")
        await part(1, "fan/b")  # b1, then the nested map's join
        join = await runner.execute_part_async(run_id, 1, owner=OWNER, usage=spent)
        assert (join.status, join.next_step) == (RunStatus.RUNNING, 2)
        probe = await runner.execute_part_async(run_id, 2, "items", enter=True, owner=OWNER)
        assert probe.lease is not None
        epoch = probe.lease.epoch
        spent = Usage()
        spent.add(probe.base)
        for i in (1, 0):
            await part(2, f"items[{i}]")
        join = await runner.execute_part_async(run_id, 2, owner=OWNER, usage=spent)
        assert join.status is RunStatus.SUCCEEDED
        run = await runner.runtime.state.get_run(run_id)
    assert expected is not None
    assert run is not None
    assert expected.steps[1].usage == Usage(input_tokens=7 + 1 + 10, requests=4)
    assert _usages(run) == _usages(expected)
