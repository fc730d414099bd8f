"""Output for people and for programs, the same in every ``flujo`` command (plugins' too).

- Timestamps are UTC ISO-8601 with ``Z``: to the second for people (:func:`human_time`),
  to the microsecond in JSON (:func:`json_time`).
- Listings are tables with a header row and aligned columns (:func:`echo_table`); an absent
  value is ``-``, never ``None``.
- Text from outside (step errors, memories, stored values) is shown on one line with its
  control characters escaped (:func:`printable`): it must neither break a table's columns
  nor send escape sequences to the user's terminal.

Plugins use these through :mod:`flujo.plugin` (a plugin never imports another plugin).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import click

from flujo.domain.formatting import MISSING, human_time, json_time, printable

__all__ = ["MISSING", "echo_table", "human_time", "json_time", "printable", "table_lines"]


def table_lines(
    header: Sequence[str], rows: Iterable[Sequence[object]], *, right: Sequence[int] = ()
) -> list[str]:
    """The lines of a table: ``header`` then ``rows``, columns two spaces apart and padded
    to their widest cell (the columns in ``right`` aligned right, e.g. numbers); cells go
    through :func:`printable`. The last column is not padded, so no line ends in spaces."""
    cells = [list(header), *([printable(c) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return lines


def echo_table(
    header: Sequence[str], rows: Iterable[Sequence[object]], *, right: Sequence[int] = ()
) -> None:
    """Print :func:`table_lines` on stdout."""
    for line in table_lines(header, rows, right=right):
        click.echo(line)
