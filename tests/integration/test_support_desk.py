"""The README's demo, end to end: examples/support_desk run twice with every plugin installed.

Checks the printed report and the stored state: no personal data reaches the model or anything
stored, the refused ``delete_customer`` call, the sandbox result, the evaluation rows, and the
second run recalling the first. Needs bubblewrap for the local sandbox: skips with the reason
locally when it cannot run, fails when ``CI=true``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_desk"
EMAIL = "ana.garcia@example.com"
CARDS = ["4111 1111 1111 1111", "4111111111111111"]


def _require_sandbox() -> None:
    from flujo_sandbox.local import probe

    report = probe()
    if not report.ok:
        reason = "local sandbox unavailable: " + "; ".join(report.problems)
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FLUJO") and k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "demo.py", *args],
        cwd=folder,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _section(report: str, number: int) -> str:
    start = report.index(f"\n{number}. ")
    end = report.find(f"\n{number + 1}. ", start)
    return report[start : end if end != -1 else None]


def _rows(db: Path, sql: str) -> list[dict[str, Any]]:
    # closing(): sqlite3's own context manager only commits; a connection left for the garbage
    # collector deletes the -wal file whenever it runs, under a test listing the folder.
    with closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql)]


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example, without any state a local run left behind."""
    folder = tmp_path_factory.mktemp("support_desk") / "support_desk"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".flujo", "__pycache__"))
    return folder


@pytest.fixture(scope="module")
def reports(desk: Path) -> tuple[str, str]:
    """The reports of two runs of the demo, the first from a fresh state."""
    _require_sandbox()
    first = _run(desk, "--fresh")
    assert first.returncode == 0, first.stdout + first.stderr
    second = _run(desk)
    assert second.returncode == 0, second.stdout + second.stderr
    return first.stdout, second.stdout


def _run_id(report: str) -> str:
    match = re.search(r"\n8\. Run ([0-9a-f]{32}): succeeded", report)
    assert match, report
    return match.group(1)


def test_the_model_receives_pseudonyms_and_the_reply_gets_the_values_back(
    reports: tuple[str, str],
) -> None:
    for report in reports:
        assert "models: scripted (deterministic, offline)" in report
        received = _section(report, 2)
        assert "<EMAIL_1>" in received
        assert "<CREDIT_CARD_1>" in received
        assert EMAIL not in received
        assert not any(card in received for card in CARDS)
        assert "redacted CREDIT_CARD:1, EMAIL:1" in received
        reply = _section(report, 6)
        assert EMAIL in reply
        assert CARDS[0] in reply
        assert "<EMAIL_1>" not in reply


def test_delete_customer_is_refused_by_policy_and_never_reaches_the_service(
    reports: tuple[str, str],
) -> None:
    for report in reports:
        calls = _section(report, 4)
        assert re.search(
            r"delete_customer\s+pii ALLOW, tool_allowlist DENY \(privacy-team-only", calls
        )
        assert re.search(r"get_order\s+pii ALLOW, tool_allowlist ALLOW", calls)
        assert "the order service received: GET /orders/A-1001\n" in calls + "\n"
        assert "DELETE" not in calls


def test_the_refund_is_computed_in_the_sandbox(reports: tuple[str, str]) -> None:
    first, second = (_section(report, 5) for report in reports)
    assert 'stdout: {"refund": 149.9, "overcharge": 149.9}   exit code: 0   backend: local' in first
    assert "refunded 149.90 EUR" in _section(reports[0], 6)
    # The second run remembers the first refund, so the sandbox computes nothing more to refund.
    assert 'stdout: {"refund": 0.0, "overcharge": 149.9}   exit code: 0   backend: local' in second
    assert "already refunded: 149.90 EUR" in _section(reports[1], 6)


def test_the_second_run_recalls_the_first(reports: tuple[str, str]) -> None:
    first, second = reports
    assert "none: this customer's first ticket here" in _section(first, 3)
    recalled = _section(second, 3)
    first_run = _run_id(first)
    assert f"run {first_run}: refunded 149.90 EUR for order A-1001" in recalled
    assert f"run {first_run}: cus_1042 reports order A-1001 charged 2 times" in recalled
    assert "now a priority" in _section(second, 6)


def test_the_big_refund_waits_for_a_person_approved_from_the_cli(
    reports: tuple[str, str], desk: Path
) -> None:
    first, second = (_section(r, 4) for r in reports)
    assert "route (Step.branch on the triage): billing" in first
    # One APPROVE (asked when the call paused the run), then the supervisor's answer.
    assert first.count("tool_allowlist APPROVE (big-") == 1, first
    assert "issue_refund approved by demo-supervisor: double charge confirmed" in first
    assert "| flujo runs approve " in first
    assert "- issue_refund paid: 149.90 EUR for A-1001" in first
    # The second run refunds nothing more: no call to approve.
    assert "APPROVE" not in second
    assert "- issue_refund paid: nothing" in second
    db = desk / ".flujo" / "flujo.db"
    rows = _rows(db, "SELECT stage, decision, actor FROM policy_decisions WHERE actor IS NOT NULL")
    assert rows == [{"stage": "approval", "decision": "allow", "actor": "demo-supervisor"}]


def test_each_run_gets_a_shadow_evaluation(reports: tuple[str, str], desk: Path) -> None:
    for report in reports:
        assert "evaluator python (judge.py:judge_reply): scored, score 1.00, good" in report
    rows = _rows(
        desk / ".flujo" / "flujo.db",
        "SELECT run_id, evaluator, status, score, sample_weight FROM evaluations ORDER BY run_id",
    )
    assert sorted(row["run_id"] for row in rows) == sorted(_run_id(r) for r in reports)
    assert all(
        (row["evaluator"], row["status"], row["score"], row["sample_weight"])
        == ("python", "scored", 1.0, 1.0)
        for row in rows
    )


def test_stored_state_holds_no_pii_and_the_audit_log_has_the_refusal(
    reports: tuple[str, str], desk: Path
) -> None:
    state = desk / ".flujo"
    files = [path for path in state.rglob("*") if path.is_file()]
    assert any(path.name == "flujo.db" for path in files)
    assert any("memory" in path.parts for path in files)  # the embedded vector store
    for path in files:
        data = path.read_bytes()
        for needle in [EMAIL, *CARDS]:
            assert needle.encode() not in data, f"{needle!r} stored in {path}"
    db = state / "flujo.db"
    runs = _rows(db, "SELECT run_id, status, input FROM workflow_state")
    assert {row["status"] for row in runs} == {"succeeded"}
    assert len(runs) == 2
    assert all("<EMAIL_1>" in row["input"] for row in runs)
    refusals = _rows(
        db,
        "SELECT run_id FROM policy_decisions WHERE tool = 'delete_customer' "
        "AND decision = 'deny' AND rule = 'privacy-team-only'",
    )
    assert sorted(row["run_id"] for row in refusals) == sorted(_run_id(r) for r in reports)
    for report in reports:
        for command in ("flujo runs show", "flujo governance audit", "flujo evals list"):
            assert f"{command} " in report
        assert "flujo memory search" in report


def test_the_memory_store_and_evaluations_hold_no_pii_read_through_the_store(
    reports: tuple[str, str], desk: Path
) -> None:
    """The raw-byte check above cannot see what Qdrant keeps compressed: every memory the
    store holds is read back through the store itself (every payload field), and every
    evaluation row through SQL."""
    import asyncio

    from flujo.config import load_config
    from flujo.state import open_state
    from flujo_memory.service import MemoryService

    async def scan() -> list[Any]:
        config = load_config(desk / "flujo.toml", environ={})
        state = await open_state(config)
        registry = config.plugin_manager.registry if config.plugin_manager else None
        service = MemoryService(config, state, registry=registry)
        try:
            found: list[Any] = await service.get_store().scan()
            return found
        finally:
            await service.close()
            await state.close()

    memories = asyncio.run(scan())
    assert len(memories) >= 2, "the store holds no memories: the check would prove nothing"
    for memory in memories:
        payload = json.dumps(
            [memory.text, memory.scope, memory.run_id, memory.step_name, memory.metadata],
            ensure_ascii=False,
            default=str,
        )
        for needle in [EMAIL, *CARDS]:
            assert needle not in payload, f"{needle!r} in memory {memory.id}: {payload}"
    evaluations = _rows(desk / ".flujo" / "flujo.db", "SELECT * FROM evaluations")
    assert evaluations
    for needle in [EMAIL, *CARDS]:
        assert needle not in json.dumps(evaluations, default=str)


def test_without_a_sandbox_the_demo_fails_closed(desk: Path, tmp_path: Path) -> None:
    folder = tmp_path / "support_desk"
    shutil.copytree(desk, folder, ignore=shutil.ignore_patterns(".flujo", "__pycache__"))
    script = (
        "import sys; sys.argv = ['demo.py', '--fresh']; import demo\n"
        "demo.sandbox_problems = lambda: ['bubblewrap (bwrap) is not installed: apt-get install "
        "bubblewrap']\n"
        "sys.exit(demo.main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=folder,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "bubblewrap (bwrap) is not installed" in done.stderr
    assert "flujo sandbox doctor" in done.stderr
    assert "Nothing was run" in done.stderr
    assert done.stdout == ""
    assert not (folder / ".flujo").exists()


def test_a_provider_model_runs_the_same_pipeline_and_never_sees_pii(
    desk: Path, tmp_path: Path
) -> None:
    """``FLUJO_DEMO_MODEL=openai:gpt-4o-mini`` on a fake OpenAI server: the real provider code."""
    from flujo.testing.fake_openai import FakeOpenAIServer, call_tool, openai_env

    _require_sandbox()
    folder = tmp_path / "support_desk"
    shutil.copytree(desk, folder, ignore=shutil.ignore_patterns(".flujo", "__pycache__"))
    triage = {
        "customer_id": "cus_1042",
        "order_id": "A-1001",
        "issue": "double_charge",
        "contact": "<EMAIL_1>",
        "card": "<CREDIT_CARD_1>",
        "currency": "EUR",
        "order_total": 59.9,
        "charges": [59.9, 59.9],
        "deletion_requested": True,
        "summary": "order A-1001 was charged twice",
    }
    code = "print(round(59.9 * 2 - 59.9, 2))"
    replies = [
        call_tool("recall_earlier_tickets", query="charged twice A-1001"),
        call_tool("get_order", input={"order_id": "A-1001"}),
        call_tool("delete_customer", input={"customer_id": "cus_1042"}),
        triage,
        call_tool("flujo__builtins__code_interpreter", code=code),  # the id as a model sees it
        {"order_id": "A-1001", "amount": 59.9, "currency": "EUR", "rationale": "one extra charge"},
        {"score": 0.75, "label": "good", "reasoning": "refund stated"},  # the judge
    ]
    with FakeOpenAIServer(replies) as server:
        env = {**_env(), **openai_env(server), "FLUJO_DEMO_MODEL": "openai:gpt-4o-mini"}
        done = subprocess.run(
            [sys.executable, "demo.py", "--fresh"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        sent = [json.dumps(request.body) for request in server.requests]
        paths = {request.path for request in server.requests}
    assert done.returncode == 0, done.stdout + done.stderr
    report = done.stdout
    assert "models: openai:gpt-4o-mini" in report
    assert len(sent) == len(replies)
    assert paths == {"/v1/responses"}
    assert "<EMAIL_1>" in sent[0]
    assert "<CREDIT_CARD_1>" in sent[0]
    for body in sent:  # nothing that left for the provider carries the personal data
        assert EMAIL not in body
        assert not any(card in body for card in CARDS)
    assert re.search(r"delete_customer\s+pii ALLOW, tool_allowlist DENY", _section(report, 4))
    assert "stdout: 59.9   exit code: 0   backend: local" in _section(report, 5)
    assert EMAIL in _section(report, 6)
    assert "refunded 59.90 EUR" in _section(report, 6)
    assert "scored, score 0.75, good" in _section(report, 7)


def test_the_look_deeper_commands_work_as_printed_from_another_folder(
    reports: tuple[str, str], tmp_path: Path
) -> None:
    """Pasted into a shell whose PATH has no flujo, in another folder, each command works."""
    commands = reports[1].split("\nLook deeper", 1)[1].splitlines()[1:]
    commands = [line.strip() for line in commands if line.strip()]
    assert len(commands) == 4, reports[1]
    bin_dir = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != bin_dir)
    assert shutil.which("flujo", path=path) != str(Path(bin_dir) / "flujo")
    for command in commands:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env={**_env(), "PATH": path},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
        assert done.stdout.strip(), f"{command} printed nothing"


def test_plugins_run_options_take_the_id_prefix_listings_print(
    reports: tuple[str, str], desk: Path
) -> None:
    """governance audit and evals list print full run ids and accept a unique prefix; an
    unknown prefix is an error (exit 2), never an empty listing that looks like "no rows"."""
    from flujo.testing.cli import run_flujo

    run_id = _run_id(reports[0])
    audit = run_flujo("governance", "audit", "--run", run_id[:12], cwd=desk, env=_env())
    assert audit.returncode == 0, audit.stderr
    assert run_id in audit.stdout
    listed = run_flujo("evals", "list", "--run", run_id[:12], cwd=desk, env=_env())
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout
    for command in (["governance", "audit"], ["evals", "list"]):
        unknown = run_flujo(*command, "--run", "ffff0000ffff", cwd=desk, env=_env())
        assert unknown.returncode == 2, unknown.stdout
        assert unknown.stderr.strip() == "error: no run with id 'ffff0000ffff'"


def test_the_route_taken_is_read_through_the_state_api(
    reports: tuple[str, str], desk: Path, tmp_path: Path
) -> None:
    """The report's route line comes from the run as stored (``get_run``'s inner steps), read
    through the state API: a run or a database it cannot read is an error, never "no route"."""
    script = (
        "import asyncio, json, sys; import demo\n"
        "from flujo import load_config\n"
        "config = load_config(demo.HERE / 'flujo.toml')\n"
        "try:\n"
        "    print(json.dumps(asyncio.run(demo.routes_taken(config, sys.argv[1]))))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
    )

    def routes(folder: Path, run_id: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", script, run_id],
            cwd=folder,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert routes(desk, _run_id(reports[0])) == '["billing"]'
    assert routes(desk, "f" * 32) == "RunNotFoundError"
    empty = tmp_path / "support_desk"
    shutil.copytree(desk, empty, ignore=shutil.ignore_patterns(".flujo", "__pycache__"))
    assert routes(empty, _run_id(reports[0])) == "StateNotFoundError"
