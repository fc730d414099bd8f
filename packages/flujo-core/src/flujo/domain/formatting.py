"""How values are written for people and for JSON, the same in every command and plugin.

Timestamps are UTC ISO-8601 with ``Z``: to the second for people (:func:`human_time`), to
the microsecond in JSON (:func:`json_time`). Text from outside is shown on one line with its
control characters escaped (:func:`printable`). Tables are in :mod:`flujo.cli._output`;
plugins use all of these through :mod:`flujo.plugin`.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

__all__ = ["MISSING", "human_time", "json_time", "printable"]

_ESCAPED = frozenset({"Cc", "Cf", "Cs"})
"""Controls (ESC, BEL...), format characters (the bidirectional overrides that make text
display in another order than it reads) and lone surrogates. Line and paragraph separators
are whitespace, already folded into spaces."""

MISSING = "-"
"""How an absent value is shown to people."""


def human_time(ts: float | None) -> str:
    """``ts`` (seconds since the epoch) for people: ``2025-01-31T12:00:05Z``; ``-`` if none."""
    if ts is None:
        return MISSING
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_time(ts: float) -> str:
    """``ts`` for JSON, to the microsecond: ``2025-01-31T12:00:05.123456Z``."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def printable(value: object, limit: int | None = None) -> str:
    """``value`` as one line of text: ``None`` is ``-``, whitespace runs are one space,
    control characters are escaped (``\\x1b``), and past ``limit`` characters it is cut
    with ``...``."""
    if value is None:
        return MISSING
    text = " ".join(str(value).split())
    line = "".join(repr(c)[1:-1] if unicodedata.category(c) in _ESCAPED else c for c in text)
    if limit is not None and len(line) > limit:
        return line[: max(limit - 3, 0)] + "..."
    return line
