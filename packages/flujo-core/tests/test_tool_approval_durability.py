"""Tool-call approval survives SIGKILL: a worker killed while its run is paused, or while the
approved call is resuming (inside the tool, before its side effect), loses nothing: the run is
still paused (then approved) in the database, the approval is not asked again, and the approved
call's side effect happens exactly once.

Real processes, real SQLite and PostgreSQL; the model is a deterministic pydantic-ai
``FunctionModel`` (no LLM here); kill points are marker files, not sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from flujo.testing.cli import run_flujo, wait_for_file

SCRIPT = """
import asyncio, json, os, pathlib, sys
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import FunctionModel
from flujo import Flujo, PolicyDecision, Step, ToolApprovalRequired, make_agent_async
from flujo.domain.errors import RunLeasedError

HERE = pathlib.Path(__file__).parent
HANG = os.environ.get("HANG", "")

def _hang(where: str) -> None:
    if HANG == where:
        (HERE / "hang.started").write_text(where)
        import time
        while True:
            time.sleep(0.05)

def model(messages, info):
    returned = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
    if returned:
        return ModelResponse(parts=[TextPart("done: " + str(returned[-1].content))])
    call = ToolCallPart("issue_refund", {"order": "A-1", "amount": 150}, tool_call_id="c1")
    return ModelResponse(parts=[call])

def issue_refund(order: str, amount: int) -> str:
    _hang("tool")
    with open(HERE / "paid.log", "a") as fh:
        fh.write(f"{order}:{amount}\\n")
    return f"refunded {amount}"

class BigRefunds:
    name = "big_refunds"
    def inspect_input(self, context, data):
        return PolicyDecision.ALLOW, data
    def inspect_tool_call(self, context, tool_name, args):
        if args.get("amount", 0) > 100:
            raise ToolApprovalRequired(self.name, "refunds above 100 EUR")
        return PolicyDecision.ALLOW

agent = make_agent_async(FunctionModel(model), "Refunds.", tools=[issue_refund])
pipeline = Step.from_callable(lambda x: x, name="triage") >> Step("refund", agent)

async def main() -> None:
    mode = sys.argv[1]
    async with Flujo(pipeline, policies=[BigRefunds()], pipeline_ref="pipe.py:pipeline") as r:
        if mode == "run":
            result = await r.run_async("refund A-1")
            print(json.dumps(result.to_dict()), flush=True)
            _hang("paused")
            return
        if mode == "approve":
            done = await r.approve_async(sys.argv[2], reason="ok", by="ann")
            print(json.dumps(done.to_dict(with_steps=False)))
            return
        for _ in range(600):
            try:
                result = await r.resume_async(sys.argv[2])
                break
            except RunLeasedError:
                await asyncio.sleep(0.05)  # the killed worker's lease has not expired yet
        print(json.dumps(result.to_dict()))

asyncio.run(main())
"""


def _env(**more: str) -> dict[str, str]:
    return {**os.environ, "FLUJO_LOAD_PLUGINS": "", **more}


def _killed_at(tmp_path: Path, hang: str, *args: str) -> str:
    marker = tmp_path / "hang.started"
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "pipe.py", *args],
        cwd=tmp_path,
        env=_env(HANG=hang),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_file(marker, proc)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    return out


def _script(tmp_path: Path, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "pipe.py", *args],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_sigkill_while_paused_and_while_resuming_loses_nothing(
    state_uri: str, tmp_path: Path
) -> None:
    (tmp_path / "pipe.py").write_text(SCRIPT)
    (tmp_path / "flujo.toml").write_text(f'[state]\nuri = "{state_uri}"\nlease_s = 0.3\n')
    env = {"FLUJO_LOAD_PLUGINS": ""}
    # 1. The worker pauses the run, then is killed: the run stays paused, listed.
    out = _killed_at(tmp_path, "paused", "run")
    run_id = str(json.loads(out.strip().splitlines()[-1])["run_id"])
    listed = run_flujo("runs", "list", "--status", "paused", "--json", cwd=tmp_path, env=env)
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
    assert not (tmp_path / "paid.log").exists()
    # 2. A person approves it from another process.
    approved = _script(tmp_path, "approve", run_id)
    assert approved["status"] == "interrupted"
    # 3. A worker resumes it and is killed inside the approved tool, before its side effect.
    _killed_at(tmp_path, "tool", "resume", run_id)
    assert not (tmp_path / "paid.log").exists()
    # 4. Another worker finishes it: the approval holds (nobody is asked again), the call
    #    runs with the approved arguments, and its effect happens once.
    result = _script(tmp_path, "resume", run_id)
    assert result["status"] == "succeeded", result
    assert result["output"] == "done: refunded 150"
    assert (tmp_path / "paid.log").read_text().split() == ["A-1:150"]
