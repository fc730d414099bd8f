"""A run's view: what each plugin adds to ``flujo runs show`` (see ``flujo_run_view``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Scalar = str | int | float | bool | None
"""A value a person reads on one line: text, a number, a flag, or nothing."""


@dataclass(frozen=True, slots=True)
class RunViewSection:
    """One plugin's part of a run's view (``flujo runs show``; a web page renders the same).

    ``fields`` are ``label: value`` lines (a summary); ``columns`` and ``rows`` a table, one
    value per column in each row; ``payload`` what ``--json`` shows under ``"data"`` for
    programs (any JSON value: dicts, lists, strings, finite numbers, booleans, ``None``; when
    left ``None`` the JSON holds just the fields and rows). Everything here is read from
    stored, scrubbed data: a section never shows what the run's policies kept out of storage.

    .. versionadded:: 0.2
    """

    title: str
    fields: Mapping[str, Scalar] = field(default_factory=dict)
    columns: Sequence[str] = ()
    rows: Sequence[Sequence[Scalar]] = ()
    payload: Any = None
    empty: str = "none"
    """What the text view prints when there are no rows (e.g. ``"no decisions"``)."""

    def check(self) -> None:
        """Raise ``TypeError``/``ValueError`` naming what is wrong when this section cannot be
        shown: a row of the wrong width, a value that is not a scalar, a payload that is not
        JSON."""
        if not isinstance(self.title, str) or not self.title:
            raise TypeError("title must be a non-empty string")
        for label, value in dict(self.fields).items():
            _scalar(value, f"fields[{label!r}]")
        width = len(self.columns)
        for i, row in enumerate(self.rows):
            if isinstance(row, str | bytes) or len(row) != width:
                raise ValueError(f"rows[{i}] has not one value per column ({width})")
            for j, value in enumerate(row):
                _scalar(value, f"rows[{i}][{j}]")
        _json(self.payload, "payload")

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of this section in ``flujo runs show --json``."""
        return {
            "title": self.title,
            "fields": dict(self.fields),
            "columns": list(self.columns),
            "rows": [list(r) for r in self.rows],
            "data": self.payload,
        }


def _scalar(value: object, where: str) -> None:
    if value is not None and not isinstance(value, str | int | float | bool):
        raise TypeError(f"{where}: {type(value).__name__} is not a str, number, bool or None")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value} is not a finite number")


def _json(value: object, where: str, depth: int = 0) -> None:
    if depth > 64:
        raise ValueError(f"{where}: nested deeper than 64 levels")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is not a string")
            _json(item, f"{where}[{key!r}]", depth + 1)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _json(item, f"{where}[{i}]", depth + 1)
    else:
        _scalar(value, where)
