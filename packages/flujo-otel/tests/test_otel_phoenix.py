"""The trace in a real backend: Arize Phoenix, started on loopback, receives the run over
OTLP/HTTP (the real exporter), and its REST API shows one tree with the right parent/child
links, the policy event on the tool's span, and no raw value anywhere.

Phoenix is heavy and pins many packages, so it is not a test dependency: set
``FLUJO_TEST_PHOENIX`` to its ``phoenix`` executable (``.ci/run`` installs it in a venv of its
own). Without it the test skips locally and fails in CI (``CI=true``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flujo_otel.ids import trace_id_hex
from flujo_otel.plugin import OtelPlugin
from flujo_otel.tracing import EVENT_POLICY
from otel_testkit import INPUT, RAW, PiiPolicy, pipeline

from flujo import Flujo, RunStatus
from flujo.config import load_config
from flujo.plugins.manager import PluginManager

PHOENIX_ENV = "FLUJO_TEST_PHOENIX"
STARTUP_S = 300.0  # Phoenix migrates its SQLite database and loads its app on first start
INGEST_S = 60.0
# The session's Phoenix starts inside the first test's time (pytest-timeout counts fixtures).
pytestmark = pytest.mark.timeout(STARTUP_S + INGEST_S + 120)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the Phoenix test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Phoenix server on a free loopback port with a throwaway working folder: its URL."""
    exe = os.environ.get(PHOENIX_ENV, "")
    if not exe:
        _missing(f"{PHOENIX_ENV} is not set (path of a `phoenix` executable)")
    if shutil.which(exe) is None:
        _missing(f"{PHOENIX_ENV}={exe!r} is not an executable")
    workdir = tmp_path_factory.mktemp("phoenix")
    port = _free_port()
    env = {
        **os.environ,
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(_free_port()),
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (workdir / "phoenix.log").open("wb")
    proc = subprocess.Popen(
        [exe, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"phoenix exited with {proc.returncode}:\n{_tail(workdir)}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"phoenix not up after {STARTUP_S:.0f} s:\n{_tail(workdir)}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()


def _tail(workdir: Path) -> str:
    return (workdir / "phoenix.log").read_text(errors="replace")[-3000:]


def _spans(url: str, trace_id: str, expected: int) -> list[dict[str, Any]]:
    """The trace's spans once Phoenix has ingested ``expected`` of them (it ingests in the
    background)."""
    deadline = time.monotonic() + INGEST_S
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        answer = httpx.get(
            f"{url}/v1/projects/default/spans",
            params={"trace_id": trace_id, "limit": 1000},
            timeout=10.0,
        )
        if answer.status_code == 200:
            spans = answer.json()["data"]
            if len(spans) >= expected:
                return spans
        time.sleep(0.5)
    pytest.fail(f"Phoenix has {len(spans)} of the trace's {expected} spans after {INGEST_S} s")


async def test_phoenix_shows_one_scrubbed_tree(phoenix: str, tmp_path: Path) -> None:
    (tmp_path / "flujo.toml").write_text(
        '[state]\nuri = "sqlite:///.flujo/flujo.db"\n[otel]\nendpoint = "' + phoenix + '"\n'
    )
    manager = PluginManager(strict=True)
    manager.register(OtelPlugin(environ={}), "flujo-otel")  # the real OTLP/HTTP exporter
    config = load_config(tmp_path / "flujo.toml", plugin_manager=manager, environ={})
    async with Flujo(pipeline(), config=config, policies=[PiiPolicy()]) as runner:
        result = await runner.run_async(INPUT)
    assert result.status is RunStatus.SUCCEEDED, result.error

    spans = _spans(phoenix, trace_id_hex(result.run_id), expected=11)
    by_id = {s["context"]["span_id"]: s for s in spans}
    roots = [s for s in spans if not s.get("parent_id")]
    assert [r["name"] for r in roots] == ["run support"]
    assert all(not s.get("parent_id") or s["parent_id"] in by_id for s in spans), "orphans"

    def parent(name: str) -> str:
        span = next(s for s in spans if s["name"] == name)
        return str(by_id[span["parent_id"]]["name"])

    assert parent("step triage") == "run support"
    assert parent("step checks/fraud/score") == "step checks"
    assert parent("invoke_agent agent") == "step triage"
    assert parent("execute_tool refund") == "invoke_agent agent"
    assert parent("chat scripted") == "invoke_agent agent"

    refund = next(s for s in spans if s["name"] == "execute_tool refund")
    events = [e for e in refund["events"] if e["name"] == EVENT_POLICY]
    assert [e["attributes"]["flujo.policy.decision"] for e in events] == ["deny"]
    assert events[0]["attributes"]["flujo.policy.reason"] == "refunds need a person"

    everything = json.dumps(spans, ensure_ascii=False)
    for raw in RAW:
        assert raw not in everything
        assert json.dumps(raw)[1:-1] not in everything
    assert "<EMAIL>" in everything
