"""Branches, loops, parallels and maps are workflow code: a real dev server's history of the
run shows one ``flujo.part`` activity per router, loop iteration, parallel branch and map item
(nested: a parallel inside a loop inside a branch), a human step inside them pauses the run
until `approve` signals it, and a policy refusal inside a parallel branch is recorded as on
SQLite."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from flujo_temporal.config import TemporalSettings
from flujo_temporal.engine import TemporalEngine, connect, workflow_id
from flujo_temporal.worker import worker
from flujo_temporal.workflow import PART_ACTIVITY, STEP_ACTIVITY
from temporal_testkit import Project, calls, wait_for_status

from flujo import Flujo
from flujo.config import FlujoConfig, StateSettings
from flujo.domain.interfaces import PolicyDecision
from flujo.domain.models import RunRecord, RunStatus
from flujo.plugin import load_target
from flujo.plugins.manager import PluginManager

TREE = """
from pathlib import Path
from flujo import Step

HERE = Path(__file__).parent


def _note(name: str) -> None:
    with open(HERE / "calls.log", "a") as fh:
        fh.write(name + "\\n")


def prep(text: str) -> int:
    _note("prep")
    return len(text)


def quick(n: int) -> int:
    _note("quick")
    return n


def left(n: int) -> int:
    _note("left")
    return n + 1


def right(n: int) -> int:
    _note("right")
    return n + 10


def split(n: int) -> list[int]:
    _note("split")
    return [n, n + 1, n + 2]


def work(n: int) -> int:
    _note(f"work:{n}")
    return n * 2


def reply(values: list[int]) -> int:
    _note("reply")
    return sum(values)


fan = Step.parallel(
    "fan",
    {"left": Step.from_callable(left), "right": Step.from_callable(right)},
    merge=lambda m: m["left"] + m["right"],
)
deep = Step.human("check", prompt="go deep?") >> Step.loop(
    "refine", fan, until=lambda n: n > 50, max_iterations=5
)
pipeline = (
    Step.from_callable(prep)
    >> Step.branch(
        "route",
        lambda n: "deep" if n > 3 else "quick",
        {"deep": deep, "quick": Step.from_callable(quick)},
    )
    >> Step.from_callable(split)
    >> Step.map("each", Step.from_callable(work), concurrency=2)
    >> Step.from_callable(reply)
)
"""


async def scheduled(settings: TemporalSettings, run_id: str) -> list[tuple[str, Any]]:
    """``(activity type, its input)`` of every activity the run's workflow scheduled, read
    from its Temporal history."""
    return [(kind, args) for kind, args, _ in await _history(settings, run_id)]


async def most_at_once(settings: TemporalSettings, run_id: str, prefix: str) -> int:
    """The most ``flujo.part`` activities of parts starting with ``prefix`` that were
    scheduled and not yet closed at one point of the run's history."""
    most = 0
    for _, _, in_flight in await _history(settings, run_id, prefix):
        most = max(most, in_flight)
    return most


async def _history(
    settings: TemporalSettings, run_id: str, prefix: str = ""
) -> list[tuple[str, Any, int]]:
    client = await connect(settings)
    history = await client.get_workflow_handle(workflow_id(run_id)).fetch_history()
    found: list[tuple[str, Any, int]] = []
    open_ids: set[int] = set()
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            args = json.loads(attrs.input.payloads[0].data)
            if prefix and str(args.get("part") or "").startswith(prefix):
                open_ids.add(event.event_id)
            found.append((attrs.activity_type.name, args, len(open_ids)))
        for closed in (
            "activity_task_completed_event_attributes",
            "activity_task_failed_event_attributes",
            "activity_task_timed_out_event_attributes",
            "activity_task_canceled_event_attributes",
        ):
            if event.HasField(closed):
                open_ids.discard(getattr(event, closed).scheduled_event_id)
    return found


async def test_nested_constructs_are_workflow_code_one_activity_per_part(
    project: Project,
) -> None:
    ref = project.write("tree.py", TREE) + ":pipeline"
    config = project.config()
    settings = config.section("temporal", TemporalSettings)
    engine = TemporalEngine(settings)
    async with worker(config), Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        run_id = await engine.submit(runner, "hello!")
        # The human step inside the branch's route pauses the run, as a top-level one does.
        paused = await wait_for_status(runner, run_id, RunStatus.PAUSED)
        assert "waiting for a person at step 'route/deep/check'" in (paused.error or "")
        assert calls(project.root) == {"prep": 1}
        await runner.approve_async(run_id, 2)  # signals the workflow
        result = await engine.wait(runner, run_id)
        history = await scheduled(settings, run_id)
    assert result.status is RunStatus.SUCCEEDED, result.error
    # 2 -> 3+12=15 -> 16+25=41 -> 42+51=93; [93, 94, 95] doubled and summed.
    assert result.output == 2 * (93 + 94 + 95)
    assert calls(project.root) == {
        "prep": 1,
        "left": 3,
        "right": 3,
        "split": 1,
        "work:93": 1,
        "work:94": 1,
        "work:95": 1,
        "reply": 1,
    }
    parts = Counter(args["part"] for kind, args in history if kind == PART_ACTIVITY)
    # One activity per router, parallel branch and map item (and per iteration: its join).
    assert parts["route/@router"] == 1
    for n in (1, 2, 3):
        for key in ("left", "right"):
            assert parts[f"route/deep/refine#{n}/fan/{key}"] == 1, parts
        assert parts[f"route/deep/refine#{n}"] == 1
    assert not any("refine#4" in p for p in parts if p)
    for i in range(3):
        assert parts[f"each[{i}]"] == 1
    # The map's concurrency=2 is the workflow's: never three items in flight.
    assert await most_at_once(settings, run_id, "each[") == 2
    # Plain top-level steps are one flujo.step activity each, as before.
    steps = Counter(args["index"] for kind, args in history if kind == STEP_ACTIVITY)
    assert steps == {0: 1, 2: 1, 4: 1}


POLICY = """
from flujo import Step


def leak(text: str) -> str:
    return text + " with a secret"


def send(text: str) -> str:
    return "sent: " + text


def fine(text: str) -> str:
    return "fine: " + text


pipeline = (
    Step.from_callable(lambda text: text, name="first")
    >> Step.parallel(
        "fan",
        {"a": Step.from_callable(leak) >> Step.from_callable(send), "b": Step.from_callable(fine)},
    )
)
"""


class NoSecrets:
    """Refuses a step whose input mentions a secret."""

    name = "no_secrets"

    def inspect_input(self, context: Any, data: Any) -> tuple[PolicyDecision, Any]:
        if isinstance(data, str) and "secret" in data:
            return PolicyDecision.DENY, data
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(self, context: Any, tool_name: str, args: Any) -> PolicyDecision:
        return PolicyDecision.ALLOW


def on_sqlite_config(project: Project) -> FlujoConfig:
    """The project's pipeline on the local engine, state in SQLite beside it."""
    return FlujoConfig(
        state=StateSettings(uri=f"sqlite:///{project.root / 'local.db'}"),
        plugin_manager=PluginManager(),
    )


def recorded(run: RunRecord) -> tuple[Any, ...]:
    """What a run records of the refusal, without what differs between any two runs (ids,
    times) or between two schedules of concurrent branches (whether branch b was committed
    before the run ended)."""
    return (
        run.status,
        run.error,
        run.output,
        run.current_step,
        [(s.name, s.status, s.output, s.error, s.attempts) for s in run.steps],
        [
            (s.path, s.result.status, s.result.output, s.result.error, s.result.attempts)
            for s in run.inner_steps
            if s.path.startswith("fan/a/")
        ],
        run.usage,
    )


async def test_policy_refusal_inside_a_parallel_branch_is_recorded_as_on_sqlite(
    project: Project,
) -> None:
    ref = project.write("pipe.py", POLICY) + ":pipeline"
    config = project.config()
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    async with (
        worker(config, policies=[NoSecrets()]),
        Flujo(load_target(ref), config=config, pipeline_ref=ref, policies=[NoSecrets()]) as runner,
    ):
        on_temporal = await engine.run(runner, "hello")
        temporal_run = await runner.runtime.state.get_run(on_temporal.run_id)
        history = await scheduled(config.section("temporal", TemporalSettings), on_temporal.run_id)

    local_config = on_sqlite_config(project)
    local = Flujo(load_target(ref), config=local_config, pipeline_ref=ref, policies=[NoSecrets()])
    async with local:
        on_sqlite = await local.run_async("hello")
        sqlite_run = await local.runtime.state.get_run(on_sqlite.run_id)

    assert on_sqlite.status is RunStatus.BLOCKED
    assert temporal_run is not None
    assert sqlite_run is not None
    assert recorded(temporal_run) == recorded(sqlite_run)
    assert (on_temporal.status, on_temporal.error) == (on_sqlite.status, on_sqlite.error)
    # The refusal happened in branch a's own activity.
    assert ("flujo.part", "fan/a") in [(kind, args.get("part")) for kind, args in history]


WAITS = """
from pathlib import Path
from flujo import Step

HERE = Path(__file__).parent


def _note(name: str) -> None:
    with open(HERE / "calls.log", "a") as fh:
        fh.write(name + "\\n")


def after(answer: int) -> int:
    _note("after")
    return answer + 1


def other(n: int) -> int:
    _note("other")
    return n * 10


pipeline = Step.parallel(
    "fan",
    {
        "asks": Step.human("check", prompt="ok?") >> Step.from_callable(after),
        "other": Step.from_callable(other),
    },
    merge=lambda m: m["asks"] + m["other"],
)
"""


async def test_a_human_step_inside_a_parallel_branch_pauses_until_the_signal(
    project: Project,
) -> None:
    """The branch that waits reports it, the other branch finishes meanwhile (once), the run
    is paused for `approve`; the answer's signal resumes only the waiting branch."""
    ref = project.write("waits.py", WAITS) + ":pipeline"
    config = project.config()
    settings = config.section("temporal", TemporalSettings)
    engine = TemporalEngine(settings)
    async with worker(config), Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        run_id = await engine.submit(runner, 4)
        paused = await wait_for_status(runner, run_id, RunStatus.PAUSED)
        assert "waiting for a person at step 'fan/asks/check'" in (paused.error or "")
        assert calls(project.root) == {"other": 1}
        await runner.approve_async(run_id, 7)
        result = await engine.wait(runner, run_id)
        history = await scheduled(settings, run_id)
    assert (result.status, result.output) == (RunStatus.SUCCEEDED, 8 + 40), result.error
    assert calls(project.root) == {"other": 1, "after": 1}
    parts = Counter(args["part"] for kind, args in history if kind == PART_ACTIVITY)
    assert (parts["fan/asks"], parts["fan/other"]) == (2, 1)  # waited, then went on


BUDGET = """
from pathlib import Path
from flujo import Step

HERE = Path(__file__).parent


def _note(name: str) -> None:
    with open(HERE / "calls.log", "a") as fh:
        fh.write(name + "\\n")


def bump(n: int) -> int:
    _note(f"bump:{n}")
    return n + 1


def spread(n: int) -> list[int]:
    return [n, n + 1, n + 2]


def work(n: int) -> int:
    _note(f"work:{n}")
    return n


pipeline = (
    Step.loop("count", Step.from_callable(bump), until=lambda n: n >= 4, max_iterations=10)
    >> Step.from_callable(spread)
    >> Step.map("each", Step.from_callable(work))
)
"""


async def test_parts_past_max_parts_per_step_run_in_the_join(project: Project) -> None:
    """`max_parts_per_step` bounds a step's activities (the workflow's history): a loop's
    iterations past it, and a map longer than what is left, run in the step's join, once."""
    project.toml.write_text(project.toml.read_text() + "max_parts_per_step = 2\n")
    ref = project.write("budget.py", BUDGET) + ":pipeline"
    config = project.config()
    settings = config.section("temporal", TemporalSettings)
    engine = TemporalEngine(settings)
    async with worker(config), Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        result = await engine.run(runner, 0)
        history = await scheduled(settings, result.run_id)
    assert (result.status, result.output) == (RunStatus.SUCCEEDED, [4, 5, 6]), result.error
    assert calls(project.root) == {
        **{f"bump:{n}": 1 for n in range(4)},
        **{f"work:{n}": 1 for n in (4, 5, 6)},
    }
    parts = [args["part"] for kind, args in history if kind == PART_ACTIVITY]
    assert parts == ["count#1", "count#2", None, "each", None]


SPENDING = """
from flujo import Step
from flujo.domain.models import Usage
from flujo.domain.scope import record_usage


def spent(tokens, value):
    # A cost exact in binary: sums in any order agree.
    record_usage(Usage(input_tokens=tokens, output_tokens=1, requests=1, cost_usd=tokens / 4))
    return value


def spread(n: int) -> list[int]:
    return [n, n + 1]


def a1(xs: list[int]) -> list[int]:
    return spent(7, xs)


def b1(xs: list[int]) -> list[int]:
    return spent(1, xs)


def w(n: int) -> int:
    return spent(5, n)


def v(n: int) -> int:
    return spent(3, n)


def size(xs: list[int]) -> int:
    return len(xs)


def bump(n: int) -> int:
    return spent(2, n + 1)


pipeline = (
    Step.from_callable(spread)
    >> Step.parallel(
        "fan",
        {
            "a": Step.from_callable(a1),
            "b": Step.from_callable(b1) >> Step.map("each", Step.from_callable(w)),
        },
        merge=lambda m: m["a"],
    )
    >> Step.map("items", Step.from_callable(v), concurrency=1)
    >> Step.from_callable(size)
    >> Step.loop("again", Step.from_callable(bump), until=lambda n: n >= 4, max_iterations=5)
)
"""


def usages(run: RunRecord) -> tuple[Any, ...]:
    """Every step's and inner step's usage, by path, and the run's."""
    return (
        [(s.name, s.usage) for s in run.steps],
        sorted((s.path, s.result.usage.to_dict()) for s in run.inner_steps),
        run.usage,
    )


async def test_construct_rows_hold_the_usage_of_their_parts_as_on_sqlite(
    project: Project,
) -> None:
    """A construct's join finds its parts committed by other activities: its step row (a
    nested map's row too) still sums its inner steps' usage, as on the local engine."""
    ref = project.write("spend.py", SPENDING) + ":pipeline"
    config = project.config()
    settings = config.section("temporal", TemporalSettings)
    engine = TemporalEngine(settings)
    async with worker(config), Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        on_temporal = await engine.run(runner, 1)
        temporal_run = await runner.runtime.state.get_run(on_temporal.run_id)
        history = await scheduled(settings, on_temporal.run_id)

    local_config = on_sqlite_config(project)
    async with Flujo(load_target(ref), config=local_config, pipeline_ref=ref) as local:
        on_sqlite = await local.run_async(1)
        sqlite_run = await local.runtime.state.get_run(on_sqlite.run_id)

    assert on_temporal.status is RunStatus.SUCCEEDED, on_temporal.error
    assert temporal_run is not None
    assert sqlite_run is not None
    parts = {args.get("part") for kind, args in history if kind == PART_ACTIVITY}
    assert {"fan/a", "fan/b/each[1]", "items[0]", "again#2"} <= parts  # parts, then joins
    assert [s.usage.input_tokens for s in sqlite_run.steps] == [0, 7 + 1 + 10, 6, 0, 4]
    assert usages(temporal_run) == usages(sqlite_run)
