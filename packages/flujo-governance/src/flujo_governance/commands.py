"""``flujo governance``: ``scrub`` (try the PII policy on sample data) and ``audit``.

Imported only when the command runs (see :mod:`flujo_governance.plugin`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, Literal

import click

__all__ = ["audit_command", "governance", "scrub_command"]


@click.group("governance")
def governance() -> None:
    """Try the PII scrubber on sample data; read the policy audit log (flujo-governance)."""


def _is_jsonl(lines: list[str]) -> bool:
    records = [ln for ln in lines if ln.strip()]
    if not records:
        return False
    for line in records:
        try:
            value = json.loads(line)
        except ValueError:
            return False
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            return False
    return True


@governance.command("scrub")
@click.option(
    "--engine",
    type=click.Choice(["regex", "presidio"]),
    default=None,
    help="PII engine (default: [governance.pii] engine, else regex).",
)
@click.option(
    "--mode",
    type=click.Choice(["redact", "pseudonymize"]),
    default=None,
    help="Typed placeholders (<EMAIL>) or stable pseudonyms (<EMAIL_1>); default: the "
    "configured mode (deny counts as redact).",
)
def scrub_command(engine: str | None, mode: str | None) -> None:
    """Scrub stdin to stdout.

    When every non-empty line is a JSON object with a "text" string, writes one JSON line per
    input line with "text" scrubbed and other fields kept; otherwise scrubs the text as it is.
    Entities and custom patterns come from [governance.pii] of flujo.toml.
    """
    from flujo.cli import current_config
    from flujo_governance.pii import PIIScrubbingPolicy
    from flujo_governance.plugin import _settings
    from flujo_governance.scrubber import Replacer, redact_placeholder

    settings = _settings(current_config()).pii
    updates: dict[str, Any] = {}
    if engine is not None:
        updates["engine"] = engine
    chosen: Literal["redact", "pseudonymize"] = (
        "pseudonymize" if (mode or settings.mode) == "pseudonymize" else "redact"
    )
    policy = PIIScrubbingPolicy(settings.model_copy(update=updates))
    replace: Replacer = (
        policy.vaults.get("cli").placeholder if chosen == "pseudonymize" else redact_placeholder
    )
    data = sys.stdin.read()
    lines = data.splitlines()
    out = sys.stdout
    if _is_jsonl(lines):
        for line in lines:
            if not line.strip():
                out.write("\n")
                continue
            record = json.loads(line)
            record["text"] = policy.scrubber.text(record["text"], replace)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    out.write(policy.scrubber.text(data, replace))


@governance.command("audit")
@click.option("--run", "run_id", default=None, help="Only the decisions of this run.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of rows.")
@click.option("--limit", default=1000, show_default=True, help="At most this many rows.")
def audit_command(run_id: str | None, as_json: bool, limit: int) -> None:
    """Policy decisions recorded in the state database (DENY, REDACT, APPROVE) and people's
    answers to paused runs (stage approval, BY who answered), oldest first."""
    from flujo.cli import current_config
    from flujo.plugin import migrated, open_state, resolve_run_id
    from flujo_governance.audit import fetch_decisions, migrations

    config = current_config()

    async def load() -> list[dict[str, Any]]:
        # Read-only: no database is "no state database at ..." (exit 2), never a new one; a
        # database made before flujo-governance was installed has no decisions to show.
        state = await open_state(config, read_only=True)
        try:
            # A run id prefix, as any listing prints it; an unknown one is an error, not "none".
            full_id = await resolve_run_id(state, run_id) if run_id else None
            if not await migrated(state, migrations(state.dialect)):
                return []
            return await fetch_decisions(state, run_id=full_id, limit=limit)
        finally:
            await state.close()

    rows = asyncio.run(load())
    from flujo.plugin import echo_table, human_time, json_time

    if as_json:
        # Timestamps as every flujo command writes them in JSON: UTC ISO-8601, Z, microseconds.
        click.echo(
            json.dumps(
                [{**row, "created_at": json_time(float(row["created_at"]))} for row in rows],
                indent=2,
            )
        )
        return
    if not rows:
        click.echo("no policy decisions recorded" + (f" for run {run_id}" if run_id else ""))
        return
    echo_table(
        ("TIME", "RUN", "STEP", "POLICY", "STAGE", "TOOL", "DECISION", "RULE", "ENTITIES", "BY"),
        (
            (
                human_time(float(row["created_at"])),
                row["run_id"],
                row["step"],
                row["policy"],
                row["stage"],
                row["tool"],
                row["decision"],
                row["rule"],
                ", ".join(f"{k}:{v}" for k, v in row["entities"].items()) or None,
                row["actor"],
            )
            for row in rows
        ),
    )
