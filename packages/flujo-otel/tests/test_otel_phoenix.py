"""The trace in a real backend: Arize Phoenix, started on loopback, receives the run over
OTLP/HTTP (the real exporter), and its REST API shows one tree with the right parent/child
links, the policy event on the tool's span, and no raw value anywhere.

Phoenix is heavy and pins many packages, so it is not a test dependency: set
``FLUJO_TEST_PHOENIX`` to its ``phoenix`` executable (``.ci/run`` installs it in a venv of its
own). Without it the test skips locally and fails in CI (``CI=true``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flujo_otel.ids import trace_id_hex
from flujo_otel.plugin import OtelPlugin
from flujo_otel.testing import INGEST_S, STARTUP_S, phoenix, phoenix_spans
from flujo_otel.tracing import EVENT_POLICY
from otel_testkit import INPUT, RAW, PiiPolicy, pipeline

from flujo import Flujo, RunStatus
from flujo.config import load_config
from flujo.plugins.manager import PluginManager

__all__ = ["phoenix"]  # the session's Phoenix (flujo_otel.testing), a fixture of this module
# The session's Phoenix starts inside the first test's time (pytest-timeout counts fixtures).
pytestmark = pytest.mark.timeout(STARTUP_S + INGEST_S + 120)


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

    spans = phoenix_spans(phoenix, trace_id_hex(result.run_id), expected=11)
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
