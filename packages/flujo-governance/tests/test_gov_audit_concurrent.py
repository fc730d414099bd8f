"""Audit rows stay complete and scrubbed when many runs share one process: each row carries
the rule and entity counts of its own decision (they travel on the ``PolicyDecided`` event,
no process-global queue pairs them up), and no value the policy found reaches the database.

Real runner, real SQLite state, the real ``pii`` policy and the plugin's real audit hook.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gov_testkit import database_bytes, make_config

from flujo import Flujo, Pipeline, Step
from flujo.state import open_state
from flujo_governance.audit import fetch_decisions

CARD = "4111 1111 1111 1111"
RUNS = 16


def _emails(i: int) -> list[str]:
    return [f"user{i}x{k}@example.com" for k in range(i % 4 + 1)]


def _text(i: int) -> str:
    cards = f" card {CARD}" * (i % 3)
    return "write to " + " and ".join(_emails(i)) + cards


def _first(text: str) -> str:
    return "seen: " + text


def _second(text: str) -> str:
    return text.upper()


async def test_concurrent_runs_each_get_their_own_complete_scrubbed_rows(tmp_path: Path) -> None:
    config = make_config(tmp_path, '[governance]\npolicies = ["pii"]\n')
    pipeline = Pipeline([Step.from_callable(_first), Step.from_callable(_second)])
    async with Flujo(pipeline, config=config) as runner:
        results = await asyncio.gather(*(runner.run_async(_text(i)) for i in range(RUNS)))
    assert all(r.succeeded for r in results), [r.error for r in results]

    state = await open_state(config)
    try:
        for i, result in enumerate(results):
            rows = await fetch_decisions(state, run_id=result.run_id)
            expected = {"EMAIL": len(_emails(i))} | ({"CREDIT_CARD": i % 3} if i % 3 else {})
            # One REDACT, on the first step's input: the second step only sees placeholders.
            assert [
                (r["step"], r["policy"], r["stage"], r["decision"], r["rule"], r["entities"])
                for r in rows
            ] == [("_first", "pii", "input", "redact", "redact", expected)], i
    finally:
        await state.close()
    stored = database_bytes(tmp_path)
    for i in range(RUNS):
        for email in _emails(i):
            assert email.encode() not in stored
    assert CARD.encode() not in stored
