"""Run ids as people type them: the full id or a unique prefix of it.

Every command that takes a run id (``flujo runs show``, ``runs resume``, and plugins' ``--run``
options) resolves it here, so a 12-character id copied from any listing works everywhere and an
ambiguous one is an error that lists the candidates.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from flujo.domain.errors import RunNotFoundError

if TYPE_CHECKING:
    from flujo.domain.interfaces import StateBackend

# Run ids are uuid4().hex: a prefix is lower-case hex (which also keeps LIKE's wildcards out).
_HEX_PREFIX = re.compile(r"[0-9a-f]{1,32}")
_SHOWN = 5


class AmbiguousRunIdError(RunNotFoundError):
    """A run id prefix matches more than one run."""


async def resolve_run_id(state: StateBackend, text: str) -> str:
    """The full id of the one run whose id is ``text`` or starts with it.

    :raises RunNotFoundError: no run matches ("no run with id ...").
    :raises AmbiguousRunIdError: several runs match (the message lists some of them).
    """
    prefix = text.strip().lower()
    if not _HEX_PREFIX.fullmatch(prefix):
        raise RunNotFoundError(f"no run with id {text!r} (run ids are hexadecimal)")
    rows = await state.fetch_all(
        "SELECT run_id FROM workflow_state WHERE run_id LIKE :pattern ORDER BY run_id LIMIT :n",
        {"pattern": prefix + "%", "n": _SHOWN + 1},
    )
    ids = [str(row["run_id"]) for row in rows]
    if not ids:
        raise RunNotFoundError(f"no run with id {text!r}")
    if len(ids) > 1:
        more = ", ..." if len(ids) > _SHOWN else ""
        raise AmbiguousRunIdError(
            f"run id prefix {text!r} matches several runs: {', '.join(ids[:_SHOWN])}{more}; "
            "give more characters"
        )
    return ids[0]
