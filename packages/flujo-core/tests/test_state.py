"""The state backends, SQLite and PostgreSQL, held to one behaviour (parametrized)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from flujo import Flujo, FlujoConfig, Pipeline, RunStatus, Step, StepResult, StepStatus, Usage
from flujo.config import StateSettings
from flujo.domain.errors import LeaseLostError, UserError
from flujo.domain.interfaces import Lease, Migration, StateBackend
from flujo.domain.models import RunRecord
from flujo.plugins.manager import PluginManager
from flujo.state import open_backend

if TYPE_CHECKING:
    from .conftest import CommitLedger

PLUGIN_TABLE = Migration("audit-plugin", 1, ("CREATE TABLE audit_rows (run_id TEXT, n INTEGER)",))


async def _open(uri: str, tmp_path: Path, migrations: tuple[Migration, ...] = ()) -> StateBackend:
    backend = open_backend(StateSettings(uri=uri), tmp_path)
    await backend.open(migrations)
    return backend


def _run(run_id: str, *, version: str = "v1") -> RunRecord:
    now = time.time()
    return RunRecord(
        run_id,
        "pipe",
        version,
        "mod:pipe",
        RunStatus.RUNNING,
        {"q": "in"},
        None,
        None,
        {"run_id": run_id},
        Usage(),
        0,
        now,
        now,
    )


async def test_runs_and_steps_round_trip(state_uri: str, tmp_path: Path) -> None:
    state = await _open(state_uri, tmp_path)
    try:
        lease = await state.create_run(_run("r1"), owner="w1", lease_s=30)
        ok = StepResult("a", StepStatus.SUCCEEDED, {"x": [1, 2]}, None, 1, 1.5, Usage(3, 4, 1, 0.5))
        await state.save_step(
            "r1",
            0,
            ok,
            context_json='{"run_id": "r1", "n": 1}',
            usage=Usage(3, 4, 1, 0.5),
            lease=lease,
        )
        bad = StepResult("b", StepStatus.FAILED, None, "ValueError: no", 2, 2.0)
        await state.save_step(
            "r1",
            1,
            bad,
            context_json='{"run_id": "r1", "n": 2}',
            usage=Usage(3, 4, 1, 0.5),
            lease=lease,
        )
        run = await state.get_run("r1")
        assert run is not None
        assert run.current_step == 1  # the failed step did not advance the run
        assert run.last_output == {"x": [1, 2]}
        assert run.context == {"run_id": "r1", "n": 2}
        assert [(s.name, s.status, s.attempts, s.error) for s in run.steps] == [
            ("a", StepStatus.SUCCEEDED, 1, None),
            ("b", StepStatus.FAILED, 2, "ValueError: no"),
        ]
        assert run.steps[0].usage.total_tokens == 7
        assert run.usage.cost_usd == 0.5

        # A retried step replaces its row.
        fixed = StepResult("b", StepStatus.SUCCEEDED, "done", None, 1, 1.0)
        await state.save_step("r1", 1, fixed, context_json="{}", usage=Usage(), lease=lease)
        await state.finalize_run(
            "r1",
            RunStatus.SUCCEEDED,
            output="done",
            error=None,
            context_json='{"run_id": "r1"}',
            usage=Usage(1, 1, 1, 0.0),
            lease=lease,
        )
        run = await state.get_run("r1")
        assert run is not None
        assert run.status is RunStatus.SUCCEEDED
        assert run.output == "done"
        assert [s.status for s in run.steps] == [StepStatus.SUCCEEDED, StepStatus.SUCCEEDED]
        assert await state.get_run("nope") is None
    finally:
        await state.close()


async def test_list_runs_newest_first_with_status_filter(state_uri: str, tmp_path: Path) -> None:
    state = await _open(state_uri, tmp_path)
    try:
        leases = []
        for i in range(5):
            run = _run(f"r{i}")
            run.created_at += i
            leases.append(await state.create_run(run, owner="w", lease_s=30))
        await state.finalize_run(
            "r3",
            RunStatus.FAILED,
            output=None,
            error="x",
            context_json="{}",
            usage=Usage(),
            lease=leases[3],
        )
        assert [r.run_id for r in await state.list_runs(limit=3)] == ["r4", "r3", "r2"]
        assert [r.run_id for r in await state.list_runs(status=RunStatus.FAILED)] == ["r3"]
    finally:
        await state.close()


async def test_migrations_apply_once_and_plugin_tables_work(state_uri: str, tmp_path: Path) -> None:
    first = await _open(state_uri, tmp_path, (PLUGIN_TABLE,))
    await first.close()
    # Many workers opening at once apply every migration exactly once.
    opened = await asyncio.gather(*[_open(state_uri, tmp_path, (PLUGIN_TABLE,)) for _ in range(4)])
    state = opened[0]
    try:
        n = await state.execute(
            "INSERT INTO audit_rows VALUES (:run_id, :n)", {"run_id": "r", "n": 2}
        )
        assert n == 1
        rows = await state.fetch_all("SELECT run_id, n FROM audit_rows WHERE n >= :min", {"min": 1})
        assert rows == [{"run_id": "r", "n": 2}]
        applied = await state.fetch_all(
            "SELECT owner, version FROM flujo_migrations ORDER BY owner, version"
        )
        assert applied == [
            {"owner": "audit-plugin", "version": 1},
            {"owner": "flujo", "version": 1},
            {"owner": "flujo", "version": 2},
            {"owner": "flujo", "version": 3},
            {"owner": "flujo", "version": 4},
            {"owner": "flujo", "version": 5},
        ]
    finally:
        for backend in opened:
            await backend.close()


async def test_leases_exclude_live_workers_and_expire(state_uri: str, tmp_path: Path) -> None:
    state = await _open(state_uri, tmp_path)
    renewer = state.lease_renewer()
    try:
        alive = await state.create_run(_run("r1"), owner="alive", lease_s=30)
        v1 = await _version(state, "r1")
        assert await state.acquire_lease("r1", "other", 30, seen_version=v1) is None
        assert renewer.renew("r1", alive, 30) is True
        assert renewer.renew("r1", Lease("other", alive.epoch), 30) is False
        assert await state.claim_stale("other", 30, limit=10) == []

        dead = await state.create_run(_run("r2"), owner="dead", lease_s=0.05)
        await _until_expired(state, "r2")
        assert await state.claim_stale("rescuer", 30, limit=10) == ["r2"]
        assert renewer.renew("r2", dead, 30) is False  # the dead worker lost it
        # The claimer takes the run it claimed, on the version it then read; the new epoch
        # is that version + 1, known before the take (the heartbeat relies on it).
        seen = await _version(state, "r2")
        rescue = await state.acquire_lease("r2", "rescuer", 30, seen_version=seen)
        assert rescue == Lease("rescuer", seen + 1)
        assert rescue.epoch > dead.epoch
        assert renewer.renew("r2", rescue, 30) is True

        await state.finalize_run(
            "r1",
            RunStatus.FAILED,
            output=None,
            error="e",
            context_json="{}",
            usage=Usage(),
            lease=alive,
        )
        # Ended under its lease: released, not lost (and not re-taken by the renewal).
        assert renewer.renew("r1", alive, 30) is True
        released = await state.fetch_all(
            "SELECT lease_owner FROM workflow_state WHERE run_id = :r", {"r": "r1"}
        )
        assert released == [{"lease_owner": None}]
        stale_view = v1  # from before the run failed: the run changed since
        assert await state.acquire_lease("r1", "other", 30, seen_version=stale_view) is None
        current = await _version(state, "r1")
        assert await state.acquire_lease("r1", "other", 30, seen_version=current) is not None
    finally:
        renewer.close()
        await state.close()


async def _version(state: StateBackend, run_id: str) -> int:
    run = await state.get_run(run_id)
    assert run is not None
    return run.version


async def test_a_succeeded_run_is_never_taken_again(state_uri: str, tmp_path: Path) -> None:
    state = await _open(state_uri, tmp_path)
    try:
        lease = await state.create_run(_run("r1"), owner="w", lease_s=30)
        await state.finalize_run(
            "r1",
            RunStatus.SUCCEEDED,
            output=1,
            error=None,
            context_json="{}",
            usage=Usage(),
            lease=lease,
        )
        current = await _version(state, "r1")
        assert await state.acquire_lease("r1", "w", 30, seen_version=current) is None
    finally:
        await state.close()


async def test_writes_under_a_lost_lease_are_refused_and_store_nothing(
    state_uri: str, tmp_path: Path, commit_ledger: type[CommitLedger]
) -> None:
    """Fencing, at the backend: once another worker has taken the run, the old holder's step
    and final writes are refused in their own transaction; the ledger counts commits."""
    state = await _open(state_uri, tmp_path)
    await commit_ledger.install(state)
    try:
        old = await state.create_run(_run("r1"), owner="w", lease_s=0.05)
        step = StepResult("a", StepStatus.SUCCEEDED, "late", None, 1, 1.0)
        await state.save_step("r1", 0, step, context_json="{}", usage=Usage(), lease=old)
        await _until_expired(state, "r1")
        # The same worker id claims it again (a `resume --stale` loop reuses its id): only the
        # epoch tells the old take from the new one.
        assert await state.claim_stale("w", 30, limit=1) == ["r1"]
        before = await state.get_run("r1")
        late = StepResult("b", StepStatus.SUCCEEDED, "late", None, 1, 1.0)
        with pytest.raises(LeaseLostError, match="this worker's commit was refused"):
            await state.save_step("r1", 1, late, context_json='{"x": 1}', usage=Usage(5), lease=old)
        failed = StepResult("b", StepStatus.FAILED, None, "late", 1, 1.0)
        with pytest.raises(LeaseLostError):
            await state.save_step("r1", 1, failed, context_json="{}", usage=Usage(), lease=old)
        with pytest.raises(LeaseLostError):
            await state.finalize_run(
                "r1",
                RunStatus.SUCCEEDED,
                output="late",
                error=None,
                context_json="{}",
                usage=Usage(),
                lease=old,
            )
        after = await state.get_run("r1")
        assert after == before  # nothing of any refused write is stored
        assert await commit_ledger.steps(state) == Counter({("r1", 0): 1})
        assert await commit_ledger.finals(state) == Counter()
        # A lease on another run, or a made-up epoch, fences the same way.
        with pytest.raises(LeaseLostError):
            await state.save_step(
                "r1", 1, late, context_json="{}", usage=Usage(), lease=Lease("w", 99)
            )
        with pytest.raises(LeaseLostError):
            await state.save_step("nope", 0, late, context_json="{}", usage=Usage(), lease=old)
    finally:
        await state.close()


async def _until_expired(state: StateBackend, run_id: str) -> None:
    # Leases are wall-clock by nature: wait until this one is past its expiry.
    rows = await state.fetch_all(
        "SELECT lease_expires_at FROM workflow_state WHERE run_id = :r", {"r": run_id}
    )
    await asyncio.sleep(max(0.0, rows[0]["lease_expires_at"] - time.time()) + 0.05)


async def test_concurrent_claimers_take_each_stale_run_exactly_once(
    state_uri: str, tmp_path: Path
) -> None:
    setup = await _open(state_uri, tmp_path)
    for i in range(40):
        await setup.create_run(_run(f"r{i:02d}"), owner="dead", lease_s=0.05)
    await setup.create_run(_run("other-version", version="v2"), owner="dead", lease_s=0.05)
    await _until_expired(setup, "other-version")
    await setup.close()

    claimers = [await _open(state_uri, tmp_path) for _ in range(4)]
    try:

        async def claim(backend: StateBackend, me: str) -> list[str]:
            got: list[str] = []
            while batch := await backend.claim_stale(me, 30, limit=3, pipeline_version="v1"):
                got += batch
            return got

        results = await asyncio.gather(*[claim(b, f"w{i}") for i, b in enumerate(claimers)])
    finally:
        for backend in claimers:
            await backend.close()
    claimed = [run_id for batch in results for run_id in batch]
    assert sorted(claimed) == [f"r{i:02d}" for i in range(40)]  # all, once each, v1 only


async def _double(x: int) -> int:
    return x * 2


async def test_runner_runs_and_resumes_on_each_backend(state_uri: str, tmp_path: Path) -> None:
    config = FlujoConfig(state=StateSettings(uri=state_uri), plugin_manager=PluginManager())
    calls: list[int] = []

    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise ConnectionError("down")
        return x + 1

    pipeline = Pipeline([Step.from_callable(_double), Step.from_callable(flaky)])
    async with Flujo(pipeline, config=config) as runner:
        failed = await runner.run_async(3)
        assert failed.status is RunStatus.FAILED
        resumed = await runner.resume_async(failed.run_id)
    assert resumed.status is RunStatus.SUCCEEDED
    assert resumed.output == 7
    assert calls == [6, 6]
    state = await _open(state_uri, tmp_path)
    try:
        stored = await state.get_run(failed.run_id)
        assert stored is not None
        assert stored.status is RunStatus.SUCCEEDED
        assert stored.output == 7
        lease = await state.fetch_all(
            "SELECT lease_owner FROM workflow_state WHERE run_id = :r", {"r": failed.run_id}
        )
        assert lease == [{"lease_owner": None}]  # finalized runs hold no lease
    finally:
        await state.close()


async def test_a_worker_that_lost_its_lease_stops_before_the_next_step(
    state_uri: str, tmp_path: Path
) -> None:
    from flujo import PipelineContext
    from flujo.application.lease import LeaseLostError

    config = FlujoConfig(
        state=StateSettings(uri=state_uri, lease_s=0.1), plugin_manager=PluginManager()
    )
    ran_second: list[Any] = []
    lost = asyncio.Event()
    loop = asyncio.get_running_loop()

    class LeaseLostSeen(logging.Handler):
        # The heartbeat logs the loss: an event to wait on, not a guess at how long it takes.
        def emit(self, record: logging.LogRecord) -> None:
            if "lease lost" in record.getMessage():
                loop.call_soon_threadsafe(lost.set)

    handler = LeaseLostSeen()
    logging.getLogger("flujo.lease").addHandler(handler)

    async def first(x: int, context: PipelineContext) -> int:
        # Another worker takes the run over (as after this one stalled past its lease)...
        thief = await _open(state_uri, tmp_path)
        try:
            await thief.execute(
                "UPDATE workflow_state SET lease_owner = 'thief' WHERE run_id = :r",
                {"r": context.run_id},
            )
        finally:
            await thief.close()
        # ...and this worker's heartbeat notices on its next beat.
        await asyncio.wait_for(lost.wait(), timeout=30)
        return x

    def second(x: int) -> int:
        ran_second.append(x)
        return x

    pipeline = Pipeline([Step.from_callable(first), Step.from_callable(second)])
    try:
        async with Flujo(pipeline, config=config) as runner:
            with pytest.raises(LeaseLostError, match="another worker took it over"):
                await runner.run_async(1)
    finally:
        logging.getLogger("flujo.lease").removeHandler(handler)
    assert ran_second == []


async def test_copy_state_moves_runs_steps_and_plugin_tables(
    flujo_postgres_uri: str, tmp_path: Path
) -> None:
    from flujo.state.transfer import copy_state

    sqlite_uri = f"sqlite:///{tmp_path / 'old.db'}"
    config = FlujoConfig(state=StateSettings(uri=sqlite_uri), plugin_manager=PluginManager())
    async with Flujo(Pipeline([Step.from_callable(_double)]), config=config) as runner:
        results = [await runner.run_async(i) for i in range(3)]
    source = await _open(sqlite_uri, tmp_path, (PLUGIN_TABLE,))
    await source.execute("INSERT INTO audit_rows VALUES ('x', 1)")
    dest = await _open(flujo_postgres_uri, tmp_path, (PLUGIN_TABLE,))
    try:
        report = await copy_state(source, dest)
        assert report.copied == {
            "workflow_state": 3,
            "step_results": 3,
            "inner_step_results": 0,
            "audit_rows": 1,
        }
        assert report.skipped == []
        for result in results:
            moved = await dest.get_run(result.run_id)
            assert moved is not None
            assert moved.output == result.output
            assert [s.output for s in moved.steps] == [result.output]
        assert await dest.fetch_all("SELECT run_id, n FROM audit_rows") == [{"run_id": "x", "n": 1}]
        with pytest.raises(UserError, match="already holds runs"):
            await copy_state(source, dest)
    finally:
        await source.close()
        await dest.close()


def test_state_migrate_cli(flujo_postgres_uri: str, tmp_path: Path) -> None:
    from flujo.testing.cli import run_flujo as run_cli

    env = {"FLUJO_LOAD_PLUGINS": ""}
    (tmp_path / "pipe.py").write_text(
        "from flujo import Step\n\ndef up(x: str) -> str:\n    return x.upper()\n\n"
        "pipeline = Step.from_callable(up) >> Step.from_callable(str.lower, name='low')\n"
    )
    ran = run_cli("run", "pipe.py:pipeline", "--input", "Hi", "--json", cwd=tmp_path, env=env)
    run_id = json.loads(ran.stdout)["run_id"]
    moved = run_cli(
        "state",
        "migrate",
        "--from",
        "sqlite:///.flujo/flujo.db",
        "--to",
        flujo_postgres_uri,
        "--json",
        cwd=tmp_path,
        env=env,
    )
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["copied"] == {
        "workflow_state": 1,
        "step_results": 2,
        "inner_step_results": 0,
    }
    shown = run_cli(
        "runs",
        "show",
        run_id,
        "--json",
        cwd=tmp_path,
        env={**env, "FLUJO__STATE__URI": flujo_postgres_uri},
    )
    assert json.loads(shown.stdout)["output"] == "hi"
    again = run_cli(
        "state",
        "migrate",
        "--from",
        "sqlite:///.flujo/flujo.db",
        "--to",
        flujo_postgres_uri,
        cwd=tmp_path,
        env=env,
    )
    assert again.returncode == 2
    assert again.stderr.strip() == (
        "error: the destination already holds runs; migrate into an empty database"
    )


async def test_drain_stale_skips_runs_taken_over_and_counts_the_rest(
    state_uri: str, tmp_path: Path
) -> None:
    """The one loop behind Flujo.resume_stale_async and `flujo runs resume --stale`: claims
    one run at a time, skips (and does not count) a run another worker took over mid-way,
    stops at ``limit`` or when stopped, and lets any other error through."""
    from flujo.application.stale import drain_stale
    from flujo.domain.errors import RunLeasedError

    state = await _open(state_uri, tmp_path)
    try:
        for i in range(5):
            await state.create_run(_run(f"r{i}"), owner="dead", lease_s=0.05)
        await _until_expired(state, "r4")
        seen: list[str] = []

        async def resume(run_id: str) -> str:
            seen.append(run_id)
            if len(seen) == 1:
                raise LeaseLostError(f"run {run_id}: taken over")
            if len(seen) == 2:
                raise RunLeasedError(f"run {run_id}: leased")
            return run_id

        done = await drain_stale(state, "w", 30, resume, limit=2, stopped=lambda: False)
        assert len(seen) == 4
        assert done == seen[2:]  # the two taken over are not counted
        stopped = await drain_stale(state, "w", 30, resume, limit=10, stopped=lambda: True)
        assert stopped == []
        assert len(seen) == 4  # nothing claimed once stopped

        async def broken(run_id: str) -> str:
            raise UserError("its pipeline cannot be loaded")

        with pytest.raises(UserError):
            await drain_stale(state, "w", 30, broken, limit=10, stopped=lambda: False)
        left = await drain_stale(state, "w", 30, resume, limit=10, stopped=lambda: False)
        assert left == []  # the last one was claimed by the broken drain (its lease is live)
    finally:
        await state.close()
