"""How runs and steps are encoded in rows: shared by every backend, so they stay identical."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic_core import to_json

from flujo.domain.errors import LeaseLostError
from flujo.domain.models import RunRecord, RunStatus, StepResult, StepStatus, Usage

RUN_COLUMNS = (
    "run_id, pipeline_name, pipeline_version, pipeline_ref, status, current_step, input, "
    "context, output, last_output, error, usage, created_at, updated_at, version"
)
STEP_COLUMNS = "name, status, output, error, attempts, latency_ms, usage"


def dumps(value: Any) -> str:
    """JSON text for a stored value (types JSON cannot hold become strings)."""
    return to_json(value, serialize_unknown=True).decode()


def fenced_out(run_id: str) -> LeaseLostError:
    """The error of a write refused because its lease is no longer held."""
    return LeaseLostError(
        f"run {run_id}: another worker took it over; this worker's commit was refused"
    )


def loads(text: str | None) -> Any:
    """The inverse of :func:`dumps` (``None`` stays ``None``)."""
    return None if text is None else json.loads(text)


def run_from_row(row: Sequence[Any]) -> RunRecord:
    """A :class:`RunRecord` from a row of :data:`RUN_COLUMNS`."""
    return RunRecord(
        run_id=row[0],
        pipeline_name=row[1],
        pipeline_version=row[2],
        pipeline_ref=row[3],
        status=RunStatus(row[4]),
        current_step=row[5],
        input=loads(row[6]),
        context=loads(row[7]) or {},
        output=loads(row[8]),
        last_output=loads(row[9]),
        error=row[10],
        usage=Usage.from_dict(loads(row[11]) or {}),
        created_at=row[12],
        updated_at=row[13],
        version=row[14],
    )


def step_from_row(row: Sequence[Any]) -> StepResult:
    """A :class:`StepResult` from a row of :data:`STEP_COLUMNS`."""
    return StepResult(
        name=row[0],
        status=StepStatus(row[1]),
        output=loads(row[2]),
        error=row[3],
        attempts=row[4],
        latency_ms=row[5],
        usage=Usage.from_dict(loads(row[6]) or {}),
    )
