"""Conformance suite for :class:`~flujo.domain.interfaces.StateBackend` implementations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from flujo.domain.errors import FlujoError, LeaseLostError, StateError, StateNotFoundError
from flujo.domain.interfaces import (
    InnerRow,
    InnerStepBatches,
    Lease,
    Migration,
    StateBackend,
    StepWrite,
)
from flujo.domain.models import RunRecord, RunStatus, StepResult, StepStatus, Usage

__all__ = ["StateBackendConformance"]

_TABLE = Migration(
    "conformance-plugin",
    1,
    ("CREATE TABLE conformance_rows (run_id TEXT NOT NULL, n INTEGER NOT NULL)",),
)
_INSERT = "INSERT INTO conformance_rows (run_id, n) VALUES (:run_id, :n)"


def _run(run_id: str, *, version: str = "v1", created_at: float | None = None) -> RunRecord:
    now = time.time() if created_at is None else created_at
    return RunRecord(
        run_id=run_id,
        pipeline_name="pipe",
        pipeline_version=version,
        pipeline_ref="mod:pipe",
        status=RunStatus.RUNNING,
        input={"q": "in"},
        output=None,
        error=None,
        context={"run_id": run_id},
        usage=Usage(),
        current_step=0,
        created_at=now,
        updated_at=now,
    )


def _step(
    name: str, output: object = "out", status: StepStatus = StepStatus.SUCCEEDED
) -> StepResult:
    error = None if status is StepStatus.SUCCEEDED else f"{name} failed"
    return StepResult(name, status, output if error is None else None, error, 1, 1.5)


async def _version(state: StateBackend, run_id: str) -> int:
    run = await state.get_run(run_id)
    assert run is not None, f"get_run({run_id!r}) returned None for a created run"
    return run.version


async def _until_expired(state: StateBackend, run_id: str) -> None:
    # Leases are wall-clock by nature: wait until this one is past its expiry.
    rows = await state.fetch_all(
        "SELECT lease_expires_at FROM workflow_state WHERE run_id = :r", {"r": run_id}
    )
    await asyncio.sleep(max(0.0, float(rows[0]["lease_expires_at"]) - time.time()) + 0.05)


async def _rows(state: StateBackend, run_id: str) -> list[int]:
    found = await state.fetch_all(
        "SELECT n FROM conformance_rows WHERE run_id = :r ORDER BY n", {"r": run_id}
    )
    return [int(r["n"]) for r in found]


class StateBackendConformance:
    """Checks that a state backend keeps runs, steps, leases and plugin rows the way the runner
    relies on: round trips, migrations applied once, leases and their fencing, each stale run
    claimed once, plugin writes in the step's own transaction, read-only and must-exist opens.

    Subclass it (the class name must start with ``Test``) and provide ``make_state``: a
    function returning a new, *unopened* backend on one fresh database for this test (every
    call: the same database, so several backends can share it, as workers do)::

        from flujo.testing.conformance import StateBackendConformance

        class TestMyBackend(StateBackendConformance):
            @pytest.fixture
            def make_state(self, tmp_path):
                return lambda: MyBackend(tmp_path / "state.db")

    The database must not exist before the first open (the ``create=False`` check relies on
    it). SQL in the checks is portable (``TEXT``, ``INTEGER``, named ``:params``). Async checks
    are marked ``@pytest.mark.asyncio`` (strict and auto modes alike).
    """

    # ------------------------------------------------------------------ fixtures

    @pytest.fixture
    def make_state(self) -> Callable[[], StateBackend]:
        """New unopened backends on this test's fresh database. **Required**: override it."""
        pytest.fail(
            f"{type(self).__name__} must define a `make_state` fixture returning a function "
            "that makes an unopened state backend on a fresh database"
        )

    @pytest_asyncio.fixture
    async def state(self, make_state: Callable[[], StateBackend]) -> AsyncIterator[StateBackend]:
        """One backend, opened with the suite's plugin table, closed after the test."""
        backend = make_state()
        await backend.open((_TABLE,))
        try:
            yield backend
        finally:
            await backend.close()

    # ------------------------------------------------------------------ checks

    @pytest.mark.asyncio
    async def test_is_a_state_backend(self, make_state: Callable[[], StateBackend]) -> None:
        backend = make_state()
        assert isinstance(backend, StateBackend), "does not implement the StateBackend protocol"
        assert isinstance(backend.dialect, str), "dialect must be a str"
        assert backend.dialect, "dialect must name the SQL dialect"

    @pytest.mark.asyncio
    async def test_opening_a_missing_database_without_create_is_state_not_found(
        self, make_state: Callable[[], StateBackend]
    ) -> None:
        for kwargs in ({"create": False}, {"read_only": True}):
            backend = make_state()
            with pytest.raises(StateNotFoundError):
                await backend.open(**kwargs)  # type: ignore[arg-type]
            await backend.close()
        created = make_state()
        await created.open()
        await created.close()
        await created.close()  # idempotent
        again = make_state()
        await again.open(create=False)  # exists now
        await again.close()

    @pytest.mark.asyncio
    async def test_runs_and_steps_round_trip(self, state: StateBackend) -> None:
        lease = await state.create_run(_run("r1"), owner="w1", lease_s=30)
        assert lease == Lease("w1", 1), "create_run must grant Lease(owner, 1)"
        ok = StepResult("a", StepStatus.SUCCEEDED, {"x": [1, 2]}, None, 1, 1.5, Usage(3, 4, 1, 0.5))
        await state.save_step(
            "r1", 0, ok, context_json='{"run_id": "r1", "n": 1}', usage=Usage(3, 4, 1, 0.5),
            lease=lease,
        )  # fmt: skip
        bad = StepResult("b", StepStatus.FAILED, None, "ValueError: no", 2, 2.0)
        await state.save_step(
            "r1", 1, bad, context_json='{"run_id": "r1", "n": 2}', usage=Usage(3, 4, 1, 0.5),
            lease=lease,
        )  # fmt: skip
        run = await state.get_run("r1")
        assert run is not None
        assert run.status is RunStatus.RUNNING
        assert run.input == {"q": "in"}
        assert run.current_step == 1, "a failed step must not advance the run"
        assert run.last_output == {"x": [1, 2]}
        assert run.context == {"run_id": "r1", "n": 2}
        assert [(s.name, s.status, s.attempts, s.error) for s in run.steps] == [
            ("a", StepStatus.SUCCEEDED, 1, None),
            ("b", StepStatus.FAILED, 2, "ValueError: no"),
        ]
        assert run.steps[0].usage.total_tokens == 7
        assert run.usage.cost_usd == 0.5
        fixed = StepResult("b", StepStatus.SUCCEEDED, "done", None, 1, 1.0)
        await state.save_step("r1", 1, fixed, context_json="{}", usage=Usage(), lease=lease)
        await state.finalize_run(
            "r1", RunStatus.SUCCEEDED, output="done", error=None, context_json='{"run_id": "r1"}',
            usage=Usage(1, 1, 1, 0.0), lease=lease,
        )  # fmt: skip
        run = await state.get_run("r1")
        assert run is not None
        assert run.status is RunStatus.SUCCEEDED
        assert run.output == "done"
        assert [s.status for s in run.steps] == [StepStatus.SUCCEEDED] * 2, "a retry replaces"
        assert await state.get_run("nope") is None

    @pytest.mark.asyncio
    async def test_inner_steps_round_trip_by_path_and_are_fenced(self, state: StateBackend) -> None:
        lease = await state.create_run(_run("r1"), owner="w", lease_s=30)
        for name, output in (("loop/a[0]", 1), ("loop/a[1]", 2), ("loop/a[0]", 3)):
            await state.save_inner_step(
                "r1", 0, _step(name, output), context_json='{"n": 1}', scope_context_json=None,
                usage=Usage(1), lease=lease,
            )  # fmt: skip
        run = await state.get_run("r1")
        assert run is not None
        assert run.current_step == 0, "an inner step must not advance the run"
        assert run.context == {"n": 1}
        found = {s.result.name: s.result.output for s in run.inner_steps}
        assert found == {"loop/a[0]": 3, "loop/a[1]": 2}, "a path's later row replaces it"
        assert {s.index for s in run.inner_steps} == {0}
        note = [StepWrite("conformance-plugin", _INSERT, {"run_id": "r1", "n": 7})]
        await state.save_inner_step(
            "r1", 0, _step("loop/a[2]"), context_json=None, scope_context_json=None,
            usage=Usage(), lease=lease, writes=note,
        )  # fmt: skip
        assert await _rows(state, "r1") == [7], "an inner step's writes did not commit with it"
        with pytest.raises(LeaseLostError):
            await state.save_inner_step(
                "r1", 0, _step("loop/a[3]"), context_json=None, scope_context_json=None,
                usage=Usage(), lease=Lease("w", lease.epoch + 1), writes=note,
            )  # fmt: skip
        assert await _rows(state, "r1") == [7], "a fenced-out inner step's write committed"

    @pytest.mark.asyncio
    async def test_inner_step_batches_commit_all_or_none(self, state: StateBackend) -> None:
        """The optional ``save_inner_steps`` (:class:`InnerStepBatches`): a batch is what its
        steps committed one after another leave, and a fenced-out batch writes nothing."""
        if not isinstance(state, InnerStepBatches):
            pytest.skip("the backend has no save_inner_steps (an optional capability)")
        lease = await state.create_run(_run("r1"), owner="w", lease_s=30)
        before = await _version(state, "r1")
        rows = [
            InnerRow(0, _step("map[0]/a", 1), '{"n": 0}'),
            InnerRow(0, _step("map[1]/a", 2), None),
            InnerRow(0, _step("map[0]/a", 3), '{"n": 3}'),
        ]
        await state.save_inner_steps(
            "r1", rows, context_json='{"n": 1}', usage=Usage(4), lease=lease
        )
        run = await state.get_run("r1")
        assert run is not None
        assert run.version == before + 1, "a batch must update the run row once"
        assert run.current_step == 0, "an inner step must not advance the run"
        assert run.context == {"n": 1}
        assert run.usage.input_tokens == 4
        found = {s.path: (s.result.output, s.context) for s in run.inner_steps}
        assert found == {"map[0]/a": (3, {"n": 3}), "map[1]/a": (2, None)}, (
            "a path's later row in a batch must replace its earlier one"
        )
        await state.save_inner_steps(
            "r1", [InnerRow(0, _step("map[2]/a"), None)], context_json=None, usage=Usage(5),
            lease=lease,
        )  # fmt: skip
        run = await state.get_run("r1")
        assert run is not None
        assert run.context == {"n": 1}, "context_json=None must keep the run's context"
        stale = Lease("w", lease.epoch + 1)
        with pytest.raises(LeaseLostError):
            await state.save_inner_steps(
                "r1", [InnerRow(0, _step(f"map[{i}]/b"), None) for i in range(3)],
                context_json='{"n": 9}', usage=Usage(9), lease=stale,
            )  # fmt: skip
        run = await state.get_run("r1")
        assert run is not None
        assert not [s for s in run.inner_steps if s.path.endswith("/b")], (
            "a fenced-out batch wrote rows"
        )
        assert run.context == {"n": 1}
        assert run.usage.input_tokens == 5

    @pytest.mark.asyncio
    async def test_list_runs_newest_first_with_status_filter(self, state: StateBackend) -> None:
        leases = []
        for i in range(5):
            run = _run(f"r{i}", created_at=time.time() + i)
            leases.append(await state.create_run(run, owner="w", lease_s=30))
        await state.finalize_run(
            "r3", RunStatus.FAILED, output=None, error="x", context_json="{}", usage=Usage(),
            lease=leases[3],
        )  # fmt: skip
        assert [r.run_id for r in await state.list_runs(limit=3)] == ["r4", "r3", "r2"]
        assert [r.run_id for r in await state.list_runs(status=RunStatus.FAILED)] == ["r3"]

    @pytest.mark.asyncio
    async def test_list_runs_filters_pages_and_counts(self, state: StateBackend) -> None:
        base = 1_700_000_000.0
        ids = ["0a1", "0a2", "0b3", "1c4", "1c5", "2d6"]
        leases = {}
        for i, run_id in enumerate(ids):
            run = _run(run_id, created_at=base + (i // 2))  # pairs share a creation time
            run.pipeline_name = "odd" if i % 2 else "even"
            leases[run_id] = await state.create_run(run, owner="w", lease_s=30)
        await state.finalize_run(
            "1c4", RunStatus.FAILED, output=None, error="x", context_json="{}", usage=Usage(),
            lease=leases["1c4"],
        )  # fmt: skip

        async def listed(**kw: object) -> list[str]:
            return [r.run_id for r in await state.list_runs(**kw)]  # type: ignore[arg-type]

        everything = await listed(limit=10)
        assert everything == ["1c5", "2d6", "0b3", "1c4", "0a1", "0a2"]
        assert await listed(pipeline="odd") == ["2d6", "1c4", "0a2"]
        assert await listed(id_prefix="0a") == ["0a1", "0a2"]
        assert await listed(id_prefix="1") == ["1c5", "1c4"]
        assert await listed(id_prefix="0A") == [], "a prefix is lower-case hex"
        assert await listed(id_prefix="%") == [], "LIKE wildcards are not a prefix"
        assert await listed(id_prefix="0a-") == [], "punctuation is not ignored in a prefix"
        assert await listed(id_prefix="") == everything
        assert await listed(created_after=base + 1, created_before=base + 2) == ["0b3", "1c4"]
        assert await listed(status=RunStatus.FAILED, pipeline="odd") == ["1c4"]
        # Keyset pages: each starts after the previous page's last (created_at, run_id).
        pages: list[str] = []
        after: tuple[float, str] | None = None
        for _ in range(4):
            page = await state.list_runs(limit=4, after=after)
            pages += [r.run_id for r in page]
            if len(page) < 4:
                break
            after = (page[-1].created_at, page[-1].run_id)
        assert pages == everything, "paging skipped or repeated a run (ties on created_at)"
        counts = await state.count_runs()
        assert counts == {(None, RunStatus.RUNNING): 5, (None, RunStatus.FAILED): 1}
        assert await state.count_runs(id_prefix="1c", by_pipeline=True) == {
            ("odd", RunStatus.FAILED): 1,
            ("even", RunStatus.RUNNING): 1,
        }
        assert await state.count_runs(created_before=base + 1) == {(None, RunStatus.RUNNING): 2}

    @pytest.mark.asyncio
    async def test_migrations_apply_once_and_plugin_tables_work(
        self, make_state: Callable[[], StateBackend]
    ) -> None:
        first = make_state()
        await first.open((_TABLE,))
        await first.close()
        opened = [make_state() for _ in range(4)]
        # Workers starting together apply every migration exactly once.
        await asyncio.gather(*[b.open((_TABLE,)) for b in opened])
        state = opened[0]
        try:
            assert await state.execute(_INSERT, {"run_id": "r", "n": 2}) == 1
            rows = await state.fetch_all(
                "SELECT run_id, n FROM conformance_rows WHERE n >= :min", {"min": 1}
            )
            assert rows == [{"run_id": "r", "n": 2}]
            applied = await state.fetch_all(
                "SELECT owner, version FROM flujo_migrations WHERE owner = :o", {"o": _TABLE.owner}
            )
            assert applied == [{"owner": _TABLE.owner, "version": 1}]
        finally:
            for backend in opened:
                await backend.close()

    @pytest.mark.asyncio
    async def test_leases_exclude_live_workers_expire_and_fence_by_epoch(
        self, state: StateBackend
    ) -> None:
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
            assert renewer.renew("r2", dead, 30) is False, "a claim fences the old holder"
            seen = await _version(state, "r2")
            rescue = await state.acquire_lease("r2", "rescuer", 30, seen_version=seen)
            assert rescue == Lease("rescuer", seen + 1)
            assert renewer.renew("r2", rescue, 30) is True

            await state.finalize_run(
                "r1", RunStatus.FAILED, output=None, error="e", context_json="{}",
                usage=Usage(), lease=alive,
            )  # fmt: skip
            assert renewer.renew("r1", alive, 30) is True, "released, not lost"
            assert await state.acquire_lease("r1", "other", 30, seen_version=v1) is None
            current = await _version(state, "r1")
            assert await state.acquire_lease("r1", "other", 30, seen_version=current) is not None

            done = await state.create_run(_run("r3"), owner="w", lease_s=30)
            await state.finalize_run(
                "r3", RunStatus.SUCCEEDED, output=1, error=None, context_json="{}",
                usage=Usage(), lease=done,
            )  # fmt: skip
            current = await _version(state, "r3")
            assert await state.acquire_lease("r3", "w", 30, seen_version=current) is None
        finally:
            renewer.close()

    @pytest.mark.asyncio
    async def test_writes_under_a_lost_lease_are_refused_and_store_nothing(
        self, state: StateBackend
    ) -> None:
        old = await state.create_run(_run("r1"), owner="w", lease_s=0.05)
        await state.save_step("r1", 0, _step("a"), context_json="{}", usage=Usage(), lease=old)
        await _until_expired(state, "r1")
        # The same worker id claims it again: only the epoch tells the old take from the new.
        assert await state.claim_stale("w", 30, limit=1) == ["r1"]
        before = await state.get_run("r1")
        with pytest.raises(LeaseLostError):
            await state.save_step(
                "r1", 1, _step("b"), context_json='{"x": 1}', usage=Usage(5), lease=old
            )
        with pytest.raises(LeaseLostError):
            await state.save_step(
                "r1", 1, _step("b", status=StepStatus.FAILED), context_json="{}", usage=Usage(),
                lease=old,
            )  # fmt: skip
        with pytest.raises(LeaseLostError):
            await state.finalize_run(
                "r1", RunStatus.SUCCEEDED, output="late", error=None, context_json="{}",
                usage=Usage(), lease=old,
            )  # fmt: skip
        with pytest.raises(LeaseLostError):
            await state.save_step(
                "nope", 0, _step("a"), context_json="{}", usage=Usage(), lease=old
            )
        assert await state.get_run("r1") == before, "a refused write stored something"

    @pytest.mark.asyncio
    async def test_concurrent_claimers_take_each_stale_run_exactly_once(
        self, make_state: Callable[[], StateBackend]
    ) -> None:
        setup = make_state()
        await setup.open()
        for i in range(20):
            await setup.create_run(_run(f"r{i:02d}"), owner="dead", lease_s=0.05)
        await setup.create_run(_run("other", version="v2"), owner="dead", lease_s=0.05)
        await _until_expired(setup, "other")
        await setup.close()
        claimers = [make_state() for _ in range(3)]
        try:
            for backend in claimers:
                await backend.open()

            async def claim(backend: StateBackend, me: str) -> list[str]:
                got: list[str] = []
                while batch := await backend.claim_stale(me, 30, limit=3, pipeline_version="v1"):
                    got += batch
                return got

            results = await asyncio.gather(*[claim(b, f"w{i}") for i, b in enumerate(claimers)])
        finally:
            for backend in claimers:
                await backend.close()
        claimed = sorted(run_id for batch in results for run_id in batch)
        assert claimed == [f"r{i:02d}" for i in range(20)], "each stale v1 run, once"

    @pytest.mark.asyncio
    async def test_plugin_writes_commit_in_the_steps_own_transaction(
        self, state: StateBackend
    ) -> None:
        lease = await state.create_run(_run("r1"), owner="w", lease_s=30)
        writes = [
            StepWrite("conformance-plugin", _INSERT, {"run_id": "r1", "n": 1}),
            StepWrite("conformance-plugin", _INSERT, {"run_id": "r1", "n": 2}),
        ]
        await state.save_step(
            "r1", 0, _step("a"), context_json="{}", usage=Usage(), lease=lease, writes=writes
        )
        assert await _rows(state, "r1") == [1, 2], "the writes did not commit with the step"

        # A failing write fails the whole commit: neither the step nor the earlier write.
        broken = [
            StepWrite("conformance-plugin", _INSERT, {"run_id": "r1", "n": 3}),
            StepWrite("conformance-plugin", "INSERT INTO no_such_table (x) VALUES (:x)", {"x": 1}),
        ]
        with pytest.raises(StateError, match="conformance-plugin"):
            await state.save_step(
                "r1", 1, _step("b"), context_json="{}", usage=Usage(), lease=lease, writes=broken
            )
        run = await state.get_run("r1")
        assert run is not None
        assert [s.name for s in run.steps] == ["a"], "a step committed without its writes"
        assert run.current_step == 1
        assert await _rows(state, "r1") == [1, 2], "a write committed without its step"

        # A fenced-out take commits none of them.
        stale = Lease("w", lease.epoch + 99)
        with pytest.raises(LeaseLostError):
            await state.save_step(
                "r1", 1, _step("b"), context_json="{}", usage=Usage(), lease=stale,
                writes=[StepWrite("conformance-plugin", _INSERT, {"run_id": "r1", "n": 4})],
            )  # fmt: skip
        assert await _rows(state, "r1") == [1, 2], "a fenced-out worker's write committed"

        # Parameters are data, never SQL.
        hostile = "x'); DROP TABLE conformance_rows; --"
        await state.save_step(
            "r1", 1, _step("b"), context_json="{}", usage=Usage(), lease=lease,
            writes=[StepWrite("conformance-plugin", _INSERT, {"run_id": hostile, "n": 5})],
        )  # fmt: skip
        assert await _rows(state, hostile) == [5]

    @pytest.mark.asyncio
    async def test_a_read_only_open_refuses_writes(
        self, make_state: Callable[[], StateBackend]
    ) -> None:
        writer = make_state()
        await writer.open((_TABLE,))
        await writer.create_run(_run("r1"), owner="w", lease_s=30)
        await writer.close()
        reader = make_state()
        await reader.open(read_only=True)
        try:
            assert (await reader.get_run("r1")) is not None
            assert [r.run_id for r in await reader.list_runs()] == ["r1"]
            with pytest.raises(FlujoError):
                await reader.execute(_INSERT, {"run_id": "r1", "n": 1})
        finally:
            await reader.close()
