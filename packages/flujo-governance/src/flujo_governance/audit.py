"""The ``policy_decisions`` table: every DENY, REDACT and APPROVE, with rule and entity counts,
and every person's answer to a paused run (``stage = "approval"``: a tool call a policy wanted
approved, or a human step; ``decision`` allow/deny, ``actor`` who answered, ``reason`` why).

Policies say the rule that decided and the kinds and counts of PII found (never the values)
with :func:`flujo.plugin.decision_detail`; the core puts them on the
:class:`~flujo.domain.events.PolicyDecided` event of that very decision, and the
``flujo_policy_decided`` hook schedules the insert on the runner's background tasks, so
auditing adds no latency to the run and needs no state of its own.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from flujo.domain.interfaces import Migration, PolicyDecision

if TYPE_CHECKING:
    from flujo.application.runtime import Runtime
    from flujo.domain.events import PolicyDecided
    from flujo.domain.interfaces import StateBackend
    from flujo.plugin import RunViewSection

__all__ = [
    "OWNER",
    "TABLE",
    "fetch_decisions",
    "migrations",
    "record",
    "run_view",
]

OWNER = "flujo-governance"
TABLE = "policy_decisions"


def migrations(dialect: str) -> list[Migration]:
    """The audit table, for ``sqlite`` or ``postgresql``."""
    if dialect == "postgresql":
        id_column, real = "id BIGSERIAL PRIMARY KEY", "DOUBLE PRECISION"
    else:
        id_column, real = "id INTEGER PRIMARY KEY AUTOINCREMENT", "REAL"
    return [
        Migration(
            OWNER,
            1,
            (
                f"""CREATE TABLE {TABLE} (
                    {id_column},
                    run_id TEXT NOT NULL,
                    step TEXT NOT NULL,
                    policy TEXT NOT NULL,
                    stage TEXT NOT NULL,
                    tool TEXT,
                    decision TEXT NOT NULL,
                    rule TEXT,
                    reason TEXT,
                    entities TEXT NOT NULL,
                    created_at {real} NOT NULL
                )""",
                f"CREATE INDEX {TABLE}_run ON {TABLE} (run_id, created_at)",
            ),
        ),
        # Who answered a paused run (stage "approval"); NULL for a policy's own decision.
        Migration(OWNER, 2, (f"ALTER TABLE {TABLE} ADD COLUMN actor TEXT",)),
    ]


def record(event: PolicyDecided, runtime: Runtime, *, include_allow: bool) -> bool:
    """Schedule the row for ``event``; ``False`` when it is not recorded (an ALLOW)."""
    approval = event.where == "approval"
    if event.decision is PolicyDecision.ALLOW and not include_allow and not approval:
        return False
    # The core scrubbed reason and rule with the run's policies; the regex engine's pass is
    # for runs whose policies do not scrub (the audit table never holds raw PII).
    from flujo_governance.pii import redact_text

    reason = None if event.reason is None else redact_text(event.reason)
    rule = None if event.rule is None else redact_text(event.rule)
    actor = getattr(event, "actor", None)
    params = {
        "run_id": event.run_id,
        "step": event.step_name,
        "policy": event.policy,
        "stage": event.where,
        "tool": event.tool_name,
        "decision": str(event.decision.value),
        "rule": rule,
        "reason": reason,
        "entities": json.dumps(dict(sorted(event.entities.items()))),
        "created_at": time.time(),
        "actor": None if actor is None else redact_text(str(actor)),
    }
    state = runtime.state

    async def insert() -> None:
        await state.execute(
            f"INSERT INTO {TABLE} (run_id, step, policy, stage, tool, decision, rule, reason, "
            "entities, created_at, actor) VALUES (:run_id, :step, :policy, :stage, :tool, "
            ":decision, :rule, :reason, :entities, :created_at, :actor)",
            params,
        )

    return runtime.tasks.schedule("flujo-governance.audit", insert)


async def fetch_decisions(
    state: StateBackend, *, run_id: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Audit rows, oldest first (of one run when ``run_id`` is given); ``entities`` decoded."""
    where = "WHERE run_id = :run_id " if run_id is not None else ""
    rows = await state.fetch_all(
        f"SELECT run_id, step, policy, stage, tool, decision, rule, reason, entities, created_at, "
        f"actor FROM {TABLE} {where}ORDER BY created_at, id LIMIT :limit",
        {"run_id": run_id, "limit": limit} if run_id is not None else {"limit": limit},
    )
    for row in rows:
        row["entities"] = json.loads(row["entities"] or "{}")
    return rows


async def run_view(state: StateBackend, run_id: str) -> RunViewSection | None:
    """This run's policy decisions, for ``flujo runs show`` (``None``: a database made before
    flujo-governance was installed, so nothing was ever recorded in it)."""
    from flujo.plugin import RunViewSection, migrated

    if not await migrated(state, migrations(state.dialect)):
        return None
    rows = await fetch_decisions(state, run_id=run_id, limit=10_000)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["decision"]] = counts.get(row["decision"], 0) + 1
    return RunViewSection(
        "Policy decisions",
        fields={"decisions": len(rows), **{k.lower(): n for k, n in sorted(counts.items())}},
        columns=(
            "step",
            "policy",
            "stage",
            "tool",
            "decision",
            "rule",
            "entities",
            "actor",
            "reason",
        ),
        rows=[
            (
                row["step"],
                row["policy"],
                row["stage"],
                row["tool"],
                row["decision"],
                row["rule"],
                ", ".join(f"{k}:{v}" for k, v in row["entities"].items()) or None,
                row["actor"],
                row["reason"],
            )
            for row in rows
        ],
        payload=[{k: v for k, v in row.items() if k != "run_id"} for row in rows],
        empty="no DENY, REDACT or APPROVE decisions and no answers recorded",
    )
