"""``flujo runs show`` for people: the run, its steps, then each plugin's section, as text.

No JSON is mixed in: structured values are printed as indented ``key: value`` lines. Every
string comes from stored data, so control characters are shown escaped (a stored ``ESC [``
cannot repaint the user's terminal) and multi-line text stays inside its indentation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flujo.application.run_view import PluginSection
    from flujo.domain.models import RunRecord
    from flujo.domain.run_view import RunViewSection

# C0/C1 controls (ESC sequences), line/paragraph separators and the bidirectional overrides
# that make text display in another order than it reads.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_MAX_DEPTH = 12


def clean(text: str) -> str:
    """``text`` with control characters (tabs and newlines kept) shown as escapes."""
    return _CONTROL.sub(lambda m: ascii(m.group())[1:-1], text)


def _cell(value: object) -> str:
    """One table cell or field value on one line."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if 0 < abs(value) < 1e-3 else repr(round(value, 4))
    return " ".join(clean(str(value)).replace("\t", " ").splitlines()) or '""'


def timestamp(seconds: float) -> str:
    """A stored time as people read it: ISO 8601, UTC, to the second (the one form every
    command writes, :func:`flujo.domain.formatting.human_time`)."""
    from flujo.domain.formatting import human_time

    return human_time(seconds)


def table(
    columns: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "  "
) -> list[str]:
    """Aligned rows under a header row."""
    cells = [[_cell(c) for c in columns], *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in cells
    ]


def value_lines(value: Any, indent: str = "  ", depth: int = 0) -> list[str]:
    """A JSON-like value as indented lines (mappings as ``key: value``, lists as ``- item``)."""
    if depth > _MAX_DEPTH:
        return [indent + "…"]
    if isinstance(value, Mapping):
        if not value:
            return [indent + "(empty)"]
        lines: list[str] = []
        for key, item in value.items():
            label = _cell(key)
            if _simple(item):
                lines.extend(_text_lines(item, f"{indent}{label}: ", indent + "  "))
            else:
                lines.append(f"{indent}{label}:")
                lines.extend(value_lines(item, indent + "  ", depth + 1))
        return lines
    if isinstance(value, list | tuple):
        if not value:
            return [indent + "(empty)"]
        lines = []
        for item in value:
            if _simple(item):
                lines.extend(_text_lines(item, f"{indent}- ", indent + "  "))
            else:
                lines.append(f"{indent}-")
                lines.extend(value_lines(item, indent + "  ", depth + 1))
        return lines
    return _text_lines(value, indent, indent)


def _simple(value: object) -> bool:
    return not isinstance(value, Mapping | list | tuple) or not value


def _text_lines(value: object, first: str, rest: str) -> list[str]:
    if isinstance(value, Mapping | list | tuple):
        return [first + ("{}" if isinstance(value, Mapping) else "[]")]
    if isinstance(value, str) and "\n" in value:
        parts = clean(value.replace("\t", "    ")).split("\n")
        return [first + parts[0]] + [rest + p for p in parts[1:]]
    if isinstance(value, str):
        return [first + (clean(value) or '""')]
    return [first + _cell(value)]


def _usage(record: RunRecord) -> str:
    u = record.usage
    text = f"{u.total_tokens} tokens ({u.input_tokens} in, {u.output_tokens} out), "
    text += f"{u.requests} request{'s' if u.requests != 1 else ''}"
    return text + (f", ${u.cost_usd:.4f}" if u.cost_usd else "")


def _inner_rows(record: RunRecord, first: int, stop: int | None) -> list[list[object]]:
    """The committed steps inside the control-flow steps ``first..stop``, by path
    (``route/billing/refund``)."""
    return [
        ["", f"  {s.path}", r.status.value, r.attempts, f"{r.latency_ms:.1f} ms", r.error]
        for s in record.inner_steps
        if s.index >= first and (stop is None or s.index < stop)
        for r in (s.result,)
    ]


def render_run(record: RunRecord, sections: Sequence[PluginSection]) -> list[str]:
    """Every line of ``flujo runs show RUN_ID``."""
    lines = [f"run {record.run_id}: {record.status.value}"]
    summary: dict[str, object] = {
        "pipeline": f"{record.pipeline_name} (version {record.pipeline_version})",
        "engine": record.engine or "local",
        "created": timestamp(record.created_at),
        "updated": timestamp(record.updated_at),
        "usage": _usage(record),
    }
    if record.error:
        summary["error"] = record.error
    width = max(len(k) for k in summary)
    lines.extend(f"  {k.ljust(width)}  {_cell(v)}" for k, v in summary.items())
    lines += ["", "steps"]
    if record.steps or record.inner_steps:
        rows: list[list[object]] = []
        for i, s in enumerate(record.steps):
            rows.append([i, s.name, s.status.value, s.attempts, f"{s.latency_ms:.1f} ms", s.error])
            rows.extend(_inner_rows(record, i, i + 1))
        # Inside a control-flow step still in progress (no row of its own yet).
        rows.extend(_inner_rows(record, len(record.steps), None))
        lines.extend(table(["#", "step", "status", "attempts", "latency", "error"], rows))
    else:
        lines.append("  none yet")
    if record.inner_steps:
        # Steps inside control-flow steps (branches, loops, map items), by their path.
        inner = [
            [
                s.path,
                s.result.status.value,
                s.result.attempts,
                f"{s.result.latency_ms:.1f} ms",
                s.result.error,
            ]
            for s in record.inner_steps
        ]
        lines += ["", "inner steps"]
        lines.extend(table(["path", "status", "attempts", "latency", "error"], inner))
    for title, value in (("input", record.input), ("output", record.output)):
        lines += ["", title, *value_lines(value)]
    if record.context:
        from flujo.application.scrubbing import split_stored_context

        # People see the context's fields; the keys of flagged fields stay in --json.
        fields, _ = split_stored_context(record.context)
        lines += ["", "context", *value_lines(fields)]
    for found in sections:
        lines.append("")
        if found.section is None:
            lines += [f"{found.plugin}", f"  error: {_cell(found.error)}"]
        else:
            lines += section_lines(found.section, found.plugin)
    return lines


def section_lines(section: RunViewSection, plugin: str) -> list[str]:
    """A plugin's section: its title, its fields, its table."""
    lines = [f"{_cell(section.title)} ({plugin})"]
    if section.fields:
        width = max(len(_cell(k)) for k in section.fields)
        lines.extend(f"  {_cell(k).ljust(width)}  {_cell(v)}" for k, v in section.fields.items())
    if section.columns:
        if section.rows:
            lines.extend(table(section.columns, section.rows))
        else:
            lines.append(f"  {_cell(section.empty)}")
    elif not section.fields:
        lines.append(f"  {_cell(section.empty)}")
    return lines
