"""The group commit of inner steps (:mod:`flujo.application.inner_commits`), on real SQLite and
PostgreSQL: steps that finish in one event-loop turn commit in one transaction, all or none;
a lost lease refuses every step of a batch; a failing plugin write fails only its own step;
a map whose run is taken mid-way commits none of the items that finished after.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, FlujoConfig, Pipeline, PipelineContext, Step, Usage
from flujo.application.inner_commits import InnerCommits
from flujo.application.lease import Heartbeat
from flujo.config import StateSettings
from flujo.domain.errors import LeaseLostError, StateError
from flujo.domain.interfaces import Lease, StateBackend, StepWrite
from flujo.domain.models import RunRecord, RunStatus, StepResult, StepStatus
from flujo.plugins.manager import PluginManager
from flujo.state import open_backend
from flujo.testing.conformance.state import _INSERT, _TABLE, _rows, _run, _version


async def _open(uri: str, root: Path) -> StateBackend:
    state = open_backend(StateSettings(uri=uri), root)
    await state.open((_TABLE,))
    return state


def _step(path: str, output: Any = 1) -> StepResult:
    return StepResult(path, StepStatus.SUCCEEDED, output, None, 1, 0.5)


async def test_commits_of_one_turn_are_one_transaction(state_uri: str, tmp_path: Path) -> None:
    state = await _open(state_uri, tmp_path)
    try:
        lease = await state.create_run(_run("r1"), owner="w", lease_s=30)
        commits = InnerCommits(state, "r1", Heartbeat("r1", lease, taken=True))
        before = await _version(state, "r1")
        await asyncio.gather(
            *(
                commits.commit(
                    0,
                    _step(f"m[{i}]/a", i),
                    context_json=None,
                    scope_context_json=f'{{"i": {i}}}',
                    usage=Usage(i),
                )
                for i in range(5)
            )
        )
        run = await state.get_run("r1")
        assert run is not None
        assert run.version == before + 1, "five commits of one turn took several transactions"
        assert {s.path: (s.result.output, s.context) for s in run.inner_steps} == {
            f"m[{i}]/a": (i, {"i": i}) for i in range(5)
        }
        assert run.usage.input_tokens == 4, "the run row must hold the last commit's usage"
        # A commit alone on the run's own context (a branch, a loop) is written at once.
        await commits.commit(
            0, _step("b/x"), context_json='{"run_id": "r1", "k": 1}', scope_context_json=None,
            usage=Usage(9), alone=True,
        )  # fmt: skip
        run = await state.get_run("r1")
        assert run is not None
        assert run.context == {"run_id": "r1", "k": 1}
        assert run.version == before + 2
    finally:
        await state.close()


async def test_a_lost_lease_refuses_every_step_of_the_batch(state_uri: str, tmp_path: Path) -> None:
    state = await _open(state_uri, tmp_path)
    try:
        lease = await state.create_run(_run("r1"), owner="w", lease_s=30)
        stale = Heartbeat("r1", Lease("w", lease.epoch + 1), taken=True)
        commits = InnerCommits(state, "r1", stale)
        outcomes = await asyncio.gather(
            *(
                commits.commit(
                    0,
                    _step(f"m[{i}]/a"),
                    context_json=None,
                    scope_context_json=None,
                    usage=Usage(),
                )
                for i in range(4)
            ),
            return_exceptions=True,
        )
        assert all(isinstance(o, LeaseLostError) for o in outcomes), outcomes
        run = await state.get_run("r1")
        assert run is not None
        assert run.inner_steps == [], "a fenced-out batch committed a row"
    finally:
        await state.close()


async def test_a_failing_plugin_write_fails_only_its_own_step(
    state_uri: str, tmp_path: Path
) -> None:
    """Commits that carry plugins' writes are written alone, in order with the others: a
    plugin's failing statement must not take the steps that finished with it down."""
    state = await _open(state_uri, tmp_path)
    try:
        lease = await state.create_run(_run("r1"), owner="w", lease_s=30)
        commits = InnerCommits(state, "r1", Heartbeat("r1", lease, taken=True))
        good = [StepWrite("p", _INSERT, {"run_id": "r1", "n": 1})]
        bad = [StepWrite("p", "INSERT INTO no_such_table VALUES (:n)", {"n": 2})]
        plan: list[tuple[str, list[StepWrite]]] = [
            ("m[0]/a", []), ("m[1]/a", good), ("m[2]/a", []), ("m[3]/a", bad), ("m[4]/a", []),
        ]  # fmt: skip
        outcomes = await asyncio.gather(
            *(
                commits.commit(
                    0,
                    _step(path),
                    context_json=None,
                    scope_context_json=None,
                    usage=Usage(),
                    writes=writes,
                )
                for path, writes in plan
            ),
            return_exceptions=True,
        )
        assert [outcomes[i] for i in (0, 1, 2, 4)] == [None] * 4, outcomes
        assert isinstance(outcomes[3], StateError)
        run = await state.get_run("r1")
        assert run is not None
        assert [s.path for s in run.inner_steps] == ["m[0]/a", "m[1]/a", "m[2]/a", "m[4]/a"]
        assert await _rows(state, "r1") == [1]
    finally:
        await state.close()


async def test_steps_whose_scopes_are_cancelled_while_waiting_are_still_committed(
    state_uri: str, tmp_path: Path
) -> None:
    """A stop request cancels the scopes of a map while their finished steps wait for their
    batch: those steps did finish, and what they spent is kept (a resumed run does not run
    them again), as when each committed on its own at once. ``drain`` waits for the batch."""
    state = await _open(state_uri, tmp_path)
    try:
        lease = await state.create_run(_run("r1"), owner="w", lease_s=30)
        commits = InnerCommits(state, "r1", Heartbeat("r1", lease, taken=True))
        waiting = [
            asyncio.ensure_future(
                commits.commit(
                    0,
                    _step(f"m[{i}]/a"),
                    context_json=None,
                    scope_context_json=None,
                    usage=Usage(),
                )
            )
            for i in range(3)
        ]
        await asyncio.sleep(0)  # each has handed its commit over and waits for it
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        await commits.drain()
        run = await state.get_run("r1")
        assert run is not None
        assert sorted(s.path for s in run.inner_steps) == [f"m[{i}]/a" for i in range(3)]
    finally:
        await state.close()


# --------------------------------------------------------------------------- through a run

_thief: list[str] = []
_calls: list[int] = []
_stolen: list[asyncio.Event] = []


async def _work(x: int, context: PipelineContext) -> int:
    _calls.append(x)
    if len(_calls) == 1:
        # Another worker takes the run while the items run (as after this worker stalled);
        # the items finish once it has, together: their commits form one batch, refused.
        thief = await _open(_thief[0], Path("."))
        try:
            await thief.execute(
                "UPDATE workflow_state SET lease_owner = 'thief', lease_epoch = version + 1, "
                "version = version + 1 WHERE run_id = :r",
                {"r": context.run_id},
            )
        finally:
            await thief.close()
        _stolen[0].set()
    await _stolen[0].wait()
    return x * 10


taken = Step.from_callable(lambda n: list(range(n)), name="items") >> Step.map(
    "each", Step.from_callable(_work, name="work"), concurrency=8
)


async def test_a_map_taken_mid_way_commits_none_of_the_batch(
    state_uri: str, tmp_path: Path
) -> None:
    _thief[:] = [state_uri]
    _calls.clear()
    _stolen[:] = [asyncio.Event()]
    config = FlujoConfig(state=StateSettings(uri=state_uri), plugin_manager=PluginManager())
    async with Flujo(Pipeline(list(taken.steps)), config=config) as runner:
        with pytest.raises(LeaseLostError):
            await runner.run_async(8)
    assert sorted(_calls) == list(range(8)), "the items did not all finish (in one batch)"
    state = await _open(state_uri, tmp_path)
    try:
        [record] = await state.list_runs()
        run = await state.get_run(record.run_id)
        assert isinstance(run, RunRecord)
        assert run.status is RunStatus.RUNNING, "the run is the thief's now"
        assert run.inner_steps == [], "an item committed under a lost lease"
    finally:
        await state.close()
