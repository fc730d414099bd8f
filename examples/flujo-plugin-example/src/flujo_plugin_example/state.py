"""``example-sqlite://``: a state backend under this plugin's own scheme.

It wraps flujo-core's SQLite backend (``example-sqlite:///runs.db`` is the SQLite file
``runs.db``), delegating every member of the ``StateBackend`` contract, which is the shape a
backend on another database takes: the same methods, each keeping the contract documented in
docs/plugins.md and checked by ``StateBackendConformance``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from flujo.plugin import state_backend

if TYPE_CHECKING:
    from flujo.plugin import (
        Lease,
        LeaseRenewer,
        Migration,
        RunRecord,
        RunStatus,
        StateBackend,
        StateLocation,
        StepResult,
        StepWrite,
        Usage,
    )

SCHEME = "example-sqlite"


def example_sqlite(location: StateLocation) -> ExampleSQLiteBackend:
    """Factory of the ``example-sqlite`` scheme: the core's SQLite backend on the same path."""
    inner = replace(location, uri="sqlite" + location.uri[len(location.scheme) :], scheme="sqlite")
    return ExampleSQLiteBackend(state_backend(inner))


class ExampleSQLiteBackend:
    """A ``StateBackend`` that delegates to another (here the core's SQLite one)."""

    def __init__(self, inner: StateBackend) -> None:
        self._inner = inner
        self.dialect: str = inner.dialect

    async def open(
        self, migrations: Sequence[Migration] = (), *, create: bool = True, read_only: bool = False
    ) -> None:
        await self._inner.open(migrations, create=create, read_only=read_only)

    async def close(self) -> None:
        await self._inner.close()

    async def create_run(self, run: RunRecord, *, owner: str, lease_s: float) -> Lease:
        return await self._inner.create_run(run, owner=owner, lease_s=lease_s)

    async def acquire_lease(
        self, run_id: str, owner: str, lease_s: float, *, seen_version: int
    ) -> Lease | None:
        return await self._inner.acquire_lease(run_id, owner, lease_s, seen_version=seen_version)

    def lease_renewer(self) -> LeaseRenewer:
        return self._inner.lease_renewer()

    async def claim_stale(
        self, owner: str, lease_s: float, *, limit: int, pipeline_version: str | None = None
    ) -> list[str]:
        return await self._inner.claim_stale(
            owner, lease_s, limit=limit, pipeline_version=pipeline_version
        )

    async def save_step(
        self,
        run_id: str,
        index: int,
        step: StepResult,
        *,
        context_json: str,
        usage: Usage,
        lease: Lease,
        writes: Sequence[StepWrite] = (),
    ) -> None:
        await self._inner.save_step(
            run_id, index, step, context_json=context_json, usage=usage, lease=lease, writes=writes
        )

    async def save_inner_step(
        self,
        run_id: str,
        index: int,
        step: StepResult,
        *,
        context_json: str | None,
        scope_context_json: str | None,
        usage: Usage,
        lease: Lease,
        writes: Sequence[StepWrite] = (),
    ) -> None:
        await self._inner.save_inner_step(
            run_id,
            index,
            step,
            context_json=context_json,
            scope_context_json=scope_context_json,
            usage=usage,
            lease=lease,
            writes=writes,
        )

    async def finalize_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        output: Any,
        error: str | None,
        context_json: str,
        usage: Usage,
        lease: Lease,
    ) -> None:
        await self._inner.finalize_run(
            run_id,
            status,
            output=output,
            error=error,
            context_json=context_json,
            usage=usage,
            lease=lease,
        )

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self._inner.get_run(run_id)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        limit: int = 50,
        pipeline: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        id_prefix: str | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[RunRecord]:
        return await self._inner.list_runs(
            status=status,
            limit=limit,
            pipeline=pipeline,
            created_after=created_after,
            created_before=created_before,
            id_prefix=id_prefix,
            after=after,
        )

    async def count_runs(
        self,
        *,
        pipeline: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        id_prefix: str | None = None,
        by_pipeline: bool = False,
    ) -> dict[tuple[str | None, RunStatus], int]:
        return await self._inner.count_runs(
            pipeline=pipeline,
            created_after=created_after,
            created_before=created_before,
            id_prefix=id_prefix,
            by_pipeline=by_pipeline,
        )

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        return await self._inner.execute(sql, params)

    async def fetch_all(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return await self._inner.fetch_all(sql, params)
