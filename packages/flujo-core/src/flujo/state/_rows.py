"""How runs and steps are encoded in rows: shared by every backend, so they stay identical."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_json

from flujo.domain.errors import LeaseLostError, UnstorableValueError
from flujo.domain.models import InnerStep, RunRecord, RunStatus, StepResult, StepStatus, Usage

RUN_COLUMNS = (
    "run_id, pipeline_name, pipeline_version, pipeline_ref, status, current_step, input, "
    "context, output, last_output, error, usage, created_at, updated_at, version, engine"
)
STEP_COLUMNS = "name, status, output, error, attempts, latency_ms, usage"
INNER_COLUMNS = "path, status, output, error, attempts, latency_ms, usage, idx, context"


def dumps(value: Any) -> str:
    """Strict JSON text for a stored value, the same on every backend.

    Raises :class:`UnstorableValueError` (saying what and where) for a value with no such
    text: a lone surrogate, NaN or infinity, bytes that are not UTF-8, a type JSON does not
    know, a cycle or nesting too deep. Nothing is stored in a lossy form that a resumed run
    would read back as something else.
    """
    try:
        text = to_json(value, inf_nan_mode="constants").decode()
    except (ValueError, RecursionError) as exc:  # PydanticSerializationError is a ValueError
        raise UnstorableValueError(_why_unstorable(value, exc)) from None
    return _strict(text, value)


def dumps_stored(value: Any) -> str:
    """:func:`dumps` of ``flujo.application.scrubbing.stored_form(value)``, the same text, in
    one pass (no intermediate JSON-ready copy): a type the encoder does not know is written as
    its ``str()``. For a value stored as is (no policy scrubs it)."""
    try:
        text = to_json(value, serialize_unknown=True, inf_nan_mode="constants").decode()
    except (ValueError, RecursionError) as exc:
        raise UnstorableValueError(_why_unstorable(value, exc)) from None
    return _strict(text, value)


def dumps_model(model: BaseModel) -> str:
    """:func:`dumps` for a pydantic model (a run's context), as its ``model_dump_json``."""
    try:
        text = model.model_dump_json()
    except (ValueError, RecursionError) as exc:
        raise UnstorableValueError(_why_unstorable(model, exc)) from None
    return _strict(text, model)


def _strict(text: str, value: Any) -> str:
    # Substring tests keep the common case cheap; only a hit is parsed to tell a bare NaN
    # (not JSON) from one inside a string.
    if ("NaN" in text or "Infinity" in text) and _has_bare_constant(text):
        raise UnstorableValueError(_why_unstorable(value, None))
    return text


_NO_USAGE = Usage()
_NO_USAGE_JSON = to_json(_NO_USAGE.to_dict()).decode()


def usage_json(usage: Usage) -> str:
    """:func:`dumps` of ``usage.to_dict()``. A usage of nothing (every step that calls no model)
    is the same text every time: written without encoding it again, since a step's commit
    stores two usages."""
    if usage == _NO_USAGE:
        return _NO_USAGE_JSON
    return dumps(usage.to_dict())


def storable_text(text: str | None) -> str | None:
    """``text`` (an error message) as every backend can store it: lone surrogates escaped,
    NUL characters (refused by PostgreSQL's text type) shown as ``\\x00``."""
    if text is None:
        return None
    if text.isascii():
        return text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def could_name_a_run(run_id: str) -> bool:
    """Whether ``run_id`` is text a stored run id can be: no NUL (PostgreSQL's text refuses
    it) nor lone surrogate (not UTF-8). Any other is no run's id: looking it up answers
    nothing, rather than a driver error from an id someone typed."""
    if "\x00" in run_id:
        return False
    if run_id.isascii():
        return True
    try:
        run_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _has_bare_constant(text: str) -> bool:
    def refuse(name: str) -> Any:
        raise ValueError(name)

    try:
        json.loads(text, parse_constant=refuse)
    except ValueError:
        return True
    return False


_MAX_DEPTH = 200


def _why_unstorable(value: Any, exc: BaseException | None) -> str:
    found = _find_unstorable(value, "", 0, set())
    if found is not None:
        return found
    reason = str(exc) if exc is not None else "it has no strict JSON form"
    return reason.removeprefix("Error serializing to JSON: ")


def _find_unstorable(value: Any, path: str, depth: int, seen: set[int]) -> str | None:
    """What in ``value`` has no strict JSON form, and where (only called once dumping failed)."""
    where = f" at {path}" if path else ""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            char = ascii(value[err.start])
            return f"text{where} is not valid Unicode (lone surrogate {char} at index {err.start})"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"the number{where} is {value}, not JSON"
    if isinstance(value, bytes | bytearray):
        try:
            bytes(value).decode("utf-8")
        except UnicodeDecodeError as err:
            return f"bytes{where} are not UTF-8 text (byte {value[err.start]:#x} at {err.start})"
        return None
    if value is None or isinstance(value, bool | int):
        return None
    if depth > _MAX_DEPTH:
        return f"the value{where} is nested more than {_MAX_DEPTH} levels deep"
    if id(value) in seen:
        return f"the value{where} contains itself (a cycle)"
    seen.add(id(value))
    try:
        items: Any
        if isinstance(value, BaseModel):
            items = ((name, getattr(value, name, None)) for name in type(value).model_fields)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            items = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
        elif isinstance(value, Mapping):
            for key in value:
                if (bad := _find_unstorable(key, f"{path}(a key)", depth + 1, seen)) is not None:
                    return bad
            items = value.items()
        elif isinstance(value, list | tuple | set | frozenset):
            items = enumerate(value)
        else:
            return None  # a type the encoder knows (datetime, UUID, ...) or one it named itself
        for key, item in items:
            if (bad := _find_unstorable(item, f"{path}[{key!a}]", depth + 1, seen)) is not None:
                return bad
        return None
    finally:
        seen.discard(id(value))


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
        engine=row[15],
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


def inner_from_row(row: Sequence[Any]) -> InnerStep:
    """An :class:`InnerStep` from a row of :data:`INNER_COLUMNS`."""
    return InnerStep(index=row[7], result=step_from_row(row[:7]), context=loads(row[8]))
