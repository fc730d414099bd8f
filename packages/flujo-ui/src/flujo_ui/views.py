"""What the pages show, computed from stored runs (no HTML here: the templates render it).

Everything is read from the state backend's contract (``list_runs``, ``count_runs``,
``get_run``) and the run-view hook; nothing is shown that is not stored.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from flujo.plugin import RunStatus, StepStatus

if TYPE_CHECKING:
    from flujo.plugin import PluginSection, RunRecord, StepResult, Usage

PAGE_SIZE = 50
FINISHED = (
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.BLOCKED,
    RunStatus.LIMIT_EXCEEDED,
)
_ESCAPED = frozenset({"Cc", "Cf", "Cs"})


def visible(text: str) -> str:
    """``text`` with control and format characters (ESC, the bidirectional overrides that
    make text read in another order than it is stored) shown as escapes; newlines and tabs
    kept. HTML escaping is the templates' job (autoescape is on everywhere)."""
    return "".join(
        c if c in "\n\t" or unicodedata.category(c) not in _ESCAPED else repr(c)[1:-1] for c in text
    )


SHOWN_CHARS = 100_000
"""How much of one stored value a page shows (a page stays fast with a huge output)."""


def pretty(value: Any) -> str:
    """A stored value for people: text as it is, anything else as indented JSON; past
    :data:`SHOWN_CHARS` cut, saying how much more is stored."""
    text = value if isinstance(value, str) else None
    if text is None:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) > SHOWN_CHARS:
        more = len(text) - SHOWN_CHARS
        text = text[:SHOWN_CHARS] + f"\n… {more:,} more characters (flujo runs show --json)"
    return visible(text)


def when(ts: float | None) -> str:
    """A stored time, UTC, to the second (the CLI's form)."""
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def seconds(value: float | None) -> str:
    """A duration for people: ``812 ms``, ``3.4 s``, ``2 min 5 s``."""
    if value is None or not math.isfinite(value):
        return "-"
    if value < 0.01:
        return f"{value * 1000:.2f} ms"  # a plain function step takes microseconds
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(value, 60)
    if minutes < 60:
        return f"{minutes:.0f} min {rest:.0f} s"
    return f"{minutes / 60:.1f} h"


def usage_text(usage: Usage) -> str:
    text = f"{usage.total_tokens} tokens ({usage.input_tokens} in, {usage.output_tokens} out)"
    text += f", {usage.requests} request{'s' if usage.requests != 1 else ''}"
    return text + (f", ${usage.cost_usd:.4f}" if usage.cost_usd else "")


# ----------------------------------------------------------------------------- runs list


class FilterError(ValueError):
    """A filter in the query string that cannot be applied (said on the page)."""


def _time(value: str, name: str) -> float | None:
    text = value.strip()
    if not text:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(f"{name}: {text!r} is not a date or time (2025-01-31T12:00)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)  # the page shows UTC throughout
    return parsed.timestamp()


@dataclass(frozen=True)
class Filters:
    """The runs list's filters, from and back to its query string."""

    status: str = ""
    pipeline: str = ""
    since: str = ""
    until: str = ""
    run_id: str = ""
    after: str = ""

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filters:
        return cls(**{k: str(query.get(k, "")).strip()[:200] for k in cls.__dataclass_fields__})

    def status_value(self) -> RunStatus | None:
        if not self.status:
            return None
        try:
            return RunStatus(self.status)
        except ValueError:
            raise FilterError(f"status: {self.status!r} is not a run status") from None

    def id_prefix(self) -> str | None:
        # Ids are lower-case hex; people paste them in any case.
        return self.run_id.lower() or None

    def window(self) -> tuple[float | None, float | None]:
        return _time(self.since, "since"), _time(self.until, "until")

    def cursor(self) -> tuple[float, str] | None:
        if not self.after:
            return None
        at, _, run_id = self.after.partition("_")
        try:
            position = float(at)
        except ValueError:
            raise FilterError("after: not a page position") from None
        if not run_id or not math.isfinite(position):
            raise FilterError("after: not a page position")
        return position, run_id

    def query(self, **changes: str) -> str:
        values = {k: getattr(self, k) for k in self.__dataclass_fields__} | changes
        return urlencode({k: v for k, v in values.items() if v})


def cursor_of(run: RunRecord) -> str:
    """The ``after`` value of the page that follows ``run``."""
    return f"{run.created_at!r}_{run.run_id}"


# ----------------------------------------------------------------------------- a run


@dataclass
class Row:
    """One line of a run's timeline: a top-level step or a step inside one (by path)."""

    path: str
    depth: int
    status: str
    attempts: int
    latency_ms: float
    output: Any
    error: str | None
    usage: Usage | None
    input: Any = None
    has_input: bool = False
    bar_x: float = 0.0
    bar_w: float = 0.0
    anchor: str = ""

    @property
    def retries(self) -> int:
        return max(self.attempts - 1, 0)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def _row(result: StepResult, path: str, depth: int) -> Row:
    return Row(
        path=path,
        depth=depth,
        status=result.status.value,
        attempts=result.attempts,
        latency_ms=result.latency_ms,
        output=result.output,
        error=result.error,
        usage=result.usage,
    )


def timeline(run: RunRecord) -> list[Row]:
    """The step tree in order: each top-level step, then the steps inside it by path.

    Bars (in thousandths of the run's steps' total time): top-level steps one after the
    other; an inner step is drawn from its parent's start, its width its own duration. Start
    times of steps are not stored, so no finer placement is claimed.
    """
    rows: list[Row] = []
    total = sum(s.latency_ms for s in run.steps) or 0.0
    # A control-flow step still running has inner rows but no row of its own yet.
    inner_total = sum(i.result.latency_ms for i in run.inner_steps if i.index >= len(run.steps))
    total = max(total + inner_total, 1e-9)
    offset = 0.0
    by_index: dict[int, list[Any]] = {}
    for inner in run.inner_steps:
        by_index.setdefault(inner.index, []).append(inner)
    for index in range(max(len(run.steps), max(by_index, default=-1) + 1)):
        if index < len(run.steps):
            step = run.steps[index]
            top = _row(step, step.name, 0)
            top.input = run.input if index == 0 else run.steps[index - 1].output
            top.has_input = True
        else:
            first = by_index[index][0].path.split("/", 1)[0] if index in by_index else "?"
            top = Row(first, 0, "running", 0, 0.0, None, None, None)
        top.bar_x, top.bar_w = offset / total * 1000, top.latency_ms / total * 1000
        rows.append(top)
        for inner in by_index.get(index, ()):
            path = inner.path
            row = _row(inner.result, path, 1 + path.count("/"))
            row.bar_x = top.bar_x
            row.bar_w = min(row.latency_ms / total * 1000, 1000 - top.bar_x)
            rows.append(row)
        offset += top.latency_ms
    for i, row in enumerate(rows):
        row.anchor = f"step-{i}"
    return rows


@dataclass
class Paused:
    """Where a paused run waits and what it asks."""

    path: str
    question: str | None
    prompt: str = ""
    fields: list[FormField] | None = None
    """The answer form's fields; ``None``: a JSON answer (a schema too rich for fields)."""
    schema_text: str | None = None
    plain: bool = False
    """No schema: approving answers with the step's input (nothing to fill in)."""
    problem: str | None = None
    """Why the step's schema could not be read (its pipeline would not load)."""
    locked: bool = False
    """Not logged in: the pipeline (and so the form) is not loaded for this request."""
    expires_at: float | None = None
    expired: bool = False
    """The expiry has passed: answering it ends the run ``failed`` (the core says so)."""
    tool_calls: list[ToolCall] | None = None
    """A tool call a policy wants approved (no answer to fill in); ``None``: a human step."""
    policies: list[str] = field(default_factory=list)


@dataclass
class ToolCall:
    """One call waiting for approval, as its step's row stores it (scrubbed)."""

    tool: str
    call_id: str
    args: Any
    reason: str


def paused_record(run: RunRecord, path: str) -> Any:
    """The output the paused step at ``path`` stored (the core's pause record, if any)."""
    for inner in reversed(run.inner_steps):
        if inner.path == path and inner.result.status is StepStatus.PAUSED:
            return inner.result.output
    for step in reversed(run.steps):
        if step.name == path and step.status is StepStatus.PAUSED:
            return step.output
    return None


def describe_pause(paused: Paused, record: Any, now: float | None = None) -> None:
    """Fill ``paused`` from the stored pause record: its expiry and, for a tool-call
    approval, the calls and the policies that asked (what ``flujo runs approve`` answers)."""
    from flujo.domain.approval import TOOL_APPROVAL, expired

    if not isinstance(record, dict):
        return
    at = record.get("expires_at")
    if isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
        paused.expires_at = float(at)
        paused.expired = expired(record, now) is not None
    if record.get("kind") != TOOL_APPROVAL:
        return
    calls = record.get("calls")
    paused.tool_calls = [
        ToolCall(
            str(c.get("tool")),
            str(c.get("tool_call_id")),
            c.get("args"),
            str(c.get("reason") or ""),
        )
        for c in (calls if isinstance(calls, list) else [])
        if isinstance(c, dict)
    ]
    policies = record.get("policies")
    paused.policies = [str(p) for p in policies] if isinstance(policies, list) else []


def paused_path(run: RunRecord) -> tuple[str, str | None] | None:
    """The path of the human step a paused run waits at and its stored message (the same
    rows ``flujo runs approve`` reads)."""
    if run.status is not RunStatus.PAUSED:
        return None
    for inner in reversed(run.inner_steps):
        if inner.result.status is StepStatus.PAUSED:
            return inner.path, inner.result.error
    for step in reversed(run.steps):
        if step.status is StepStatus.PAUSED:
            return step.name, step.error
    return None


@dataclass
class FormField:
    """One input of an answer form, from the human step's JSON schema."""

    name: str
    kind: str  # text | integer | number | boolean | choice
    required: bool
    title: str
    description: str = ""
    choices: list[str] = field(default_factory=list)


_SCALAR = "__answer__"
"""The one field of a form whose answer is a plain value (a str, an int...)."""


def form_fields(schema: Mapping[str, Any]) -> list[FormField] | None:
    """Inputs for ``schema`` (a JSON schema): an object of plain properties becomes one input
    each, a plain value one input; anything richer ``None`` (answered as JSON)."""

    def one(name: str, prop: Mapping[str, Any], required: bool) -> FormField | None:
        title = str(prop.get("title") or name)
        description = str(prop.get("description") or "")
        if "enum" in prop and all(isinstance(c, str) for c in prop["enum"]):
            return FormField(name, "choice", required, title, description, list(prop["enum"]))
        kind = {"string": "text", "integer": "integer", "number": "number", "boolean": "boolean"}
        found = kind.get(str(prop.get("type")))
        return None if found is None else FormField(name, found, required, title, description)

    if schema.get("type") == "object" and "$defs" not in schema:
        props = schema.get("properties")
        if not isinstance(props, Mapping) or not props:
            return None
        required = set(schema.get("required", ()))
        fields = [one(str(n), p, n in required) for n, p in props.items()]
        return None if any(f is None for f in fields) else [f for f in fields if f is not None]
    single = one(_SCALAR, schema, True)
    return None if single is None else [single]


def parse_answer(fields: Sequence[FormField], form: Mapping[str, str]) -> Any:
    """The answer the form's values spell (checked against the schema by the core)."""
    values: dict[str, Any] = {}
    for f in fields:
        raw = form.get(f"answer.{f.name}")
        if f.kind == "boolean":
            values[f.name] = raw is not None
            continue
        if raw is None or raw == "":
            if f.required:
                raise ValueError(f"{f.title}: required")
            continue
        if f.kind == "integer":
            try:
                values[f.name] = int(raw)
            except ValueError:
                raise ValueError(f"{f.title}: {raw!r} is not a whole number") from None
        elif f.kind == "number":
            try:
                number = float(raw)
            except ValueError:
                raise ValueError(f"{f.title}: {raw!r} is not a number") from None
            if not math.isfinite(number):
                raise ValueError(f"{f.title}: {raw!r} is not a finite number")
            values[f.name] = number
        else:
            values[f.name] = raw
    if len(fields) == 1 and fields[0].name == _SCALAR:
        return values.get(_SCALAR)
    return values


def trace_id(sections: Iterable[PluginSection]) -> str | None:
    """A trace id some plugin's section shows (a field ``trace id`` / ``trace_id``)."""
    for found in sections:
        if found.section is None:
            continue
        for label, value in found.section.fields.items():
            if label.strip().lower().replace("_", " ") == "trace id" and value:
                return str(value)
    return None


# ----------------------------------------------------------------------------- pipelines


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values``, nearest rank; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(q * len(ordered)), 1)
    return ordered[rank - 1]


@dataclass
class PipelineStats:
    name: str
    runs: int
    by_status: dict[str, int]
    finished: int
    succeeded: int
    p50_s: float | None
    p95_s: float | None
    sampled: int

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.finished if self.finished else None


def durations(runs: Iterable[RunRecord]) -> list[float]:
    """Wall time of each finished run (created to last written)."""
    return [max(r.updated_at - r.created_at, 0.0) for r in runs if r.status in FINISHED]


def daily_series(runs: Sequence[RunRecord], start: float, days: int) -> dict[str, list[Any]]:
    """Per UTC day from ``start``: runs, success rate of finished runs, p50/p95 duration."""
    buckets: list[list[RunRecord]] = [[] for _ in range(days)]
    for run in runs:
        i = int((run.created_at - start) // 86400)
        if 0 <= i < days:
            buckets[i].append(run)
    series: dict[str, list[Any]] = {"t": [], "runs": [], "success": [], "p50": [], "p95": []}
    for i, bucket in enumerate(buckets):
        finished = [r for r in bucket if r.status in FINISHED]
        spans = durations(finished)
        ok = sum(r.status is RunStatus.SUCCEEDED for r in finished)
        series["t"].append(start + i * 86400)
        series["runs"].append(len(bucket))
        series["success"].append(round(ok / len(finished), 4) if finished else None)
        series["p50"].append(percentile(spans, 0.5))
        series["p95"].append(percentile(spans, 0.95))
    return series


def scores_of(sections: Iterable[PluginSection]) -> dict[str, list[float]]:
    """Numeric ``score`` cells of any section's table, by section title and evaluator (the
    column ``evaluator`` when the table has one)."""
    found: dict[str, list[float]] = {}
    for one in sections:
        section = one.section
        if section is None or "score" not in section.columns:
            continue
        columns = list(section.columns)
        at = columns.index("score")
        who = columns.index("evaluator") if "evaluator" in columns else None
        for row in section.rows:
            value = row[at]
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            name = section.title if who is None else f"{section.title}: {row[who]}"
            found.setdefault(name, []).append(float(value))
    return found
