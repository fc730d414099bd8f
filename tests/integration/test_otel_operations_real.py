"""flujo-otel with the real plugins whose work it traces through the core's operations
(``flujo_wrap_operation``; the plugins never import each other): a pipeline with a scripted
agent calling a tool, a tool refused by flujo-governance's allowlist, flujo-sandbox's code
interpreter in the real bubblewrap sandbox; ``context.retrieve`` and indexing by flujo-memory;
a shadow evaluation by flujo-evals; PII (an e-mail and a card number) in the input.

In memory (the SDK's in-memory exporter): the sandbox execution nests under the code
interpreter's tool span, the retrieval under its step, indexing and the evaluation are traces
of their own linked to the run's root span, nothing raw is exported, and the sidecar of the
remote backend receives the execution span's ``traceparent``.

In a real Arize Phoenix (``FLUJO_TEST_PHOENIX``, started once for the session; run only in the
integration session): the same run read back over its REST API: one tree, the parents, the
policy event on the refused tool's span, the sandbox span under the tool, no raw PII.

Needs bubblewrap: skips with the reason locally when it cannot run, fails when ``CI=true``.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flujo_otel.ids import root_span_id_of, trace_id_hex, trace_id_of
from flujo_otel.plugin import OtelPlugin
from flujo_otel.testing import INGEST_S, STARTUP_S, phoenix, phoenix_spans
from flujo_otel.tracing import EVENT_POLICY
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import flujo_evals.plugin
import flujo_governance.plugin
import flujo_memory.plugin
import flujo_sandbox.plugin
from flujo import Flujo, FlujoConfig, Pipeline, PipelineContext, RunStatus, Step, make_agent_async
from flujo.config import load_config
from flujo.plugins.manager import PluginManager
from flujo.testing.models import call_tool, scripted_model

__all__ = ["phoenix"]  # the session's Phoenix (flujo_otel.testing), a fixture of this module

EMAIL = "ana.garcia@example.com"
CARD = "4111 1111 1111 1111"
INPUT = f"I am {EMAIL}, card {CARD}: I was charged twice for order A-1001, 149.90 EUR."
CODE_TOOL = "flujo__builtins__code_interpreter"  # flujo.builtins.code_interpreter, as models see it

TOML = """
[state]
uri = "sqlite:///.flujo/flujo.db"

[otel]
{otel}

[governance]
policies = ["pii", "tool_allowlist"]

[governance.tools]
allow = ["lookup_order", "flujo.builtins.code_interpreter"]
on_deny = "refuse"

[memory]
index_steps = ["triage"]
embedder = "hashing"
store = "memory"

[sandbox]
{sandbox}
timeout_s = 20

[eval]
enabled = true
sampling_rate = 1.0
evaluators = ["regex"]
regex = "."
"""


def _require_sandbox() -> None:
    from flujo_sandbox.local import probe

    report = probe()
    if not report.ok:
        reason = "local sandbox unavailable: " + "; ".join(report.problems)
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


async def lookup_order(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}: two payments of 149.90 EUR by {EMAIL}"


async def refund(amount: float) -> str:
    """Refund an amount."""
    return f"refunded {amount}"


async def recall(text: str, context: PipelineContext) -> str:
    hits = await context.retrieve("charged twice", limit=3)
    return f"{text} ({len(hits)} earlier tickets)"


def _pipeline(config: FlujoConfig) -> Pipeline:
    model = scripted_model(
        call_tool("lookup_order", order_id="A-1001"),
        call_tool("refund", amount=149.9),  # not on the allowlist: refused, the model is told
        call_tool(CODE_TOOL, code="print(round(2 * 149.90 - 149.90, 2))"),
        "Refund of 149.9 EUR computed.",
    )
    tools: list[Any] = [lookup_order, refund, "flujo.builtins.code_interpreter"]
    # Tool ids are resolved with the config given (its [sandbox]), not the current folder's.
    agent = make_agent_async(model, "Help the customer.", tools=tools, config=config)
    return Pipeline([Step("triage", agent), Step.from_callable(recall, name="recall")], name="desk")


def _config(root: Path, otel: OtelPlugin, *, otel_toml: str, sandbox_toml: str) -> FlujoConfig:
    path = root / "flujo.toml"
    path.write_text(TOML.format(otel=otel_toml, sandbox=sandbox_toml))
    manager = PluginManager(strict=True)
    for module, name in (
        (flujo_evals.plugin, "flujo-evals"),
        (flujo_governance.plugin, "flujo-governance"),
        (flujo_memory.plugin, "flujo-memory"),
        (otel, "flujo-otel"),
        (flujo_sandbox.plugin, "flujo-sandbox"),
    ):
        manager.register(module, name)
    return load_config(path, plugin_manager=manager, environ={})


async def _run(config: FlujoConfig) -> Any:
    async with Flujo(_pipeline(config), config=config) as runner:
        result = await runner.run_async(INPUT)
        # The background work the run left (indexing, the evaluation), done now.
        await runner.services["memory"].flush()
        await runner.services["evals"].flush()
    assert result.status is RunStatus.SUCCEEDED, result.error
    return result


class _Kept(InMemorySpanExporter):
    def shutdown(self) -> None:  # keep the spans after the runner's shutdown
        pass


@pytest.fixture
def _instrumentation_reset() -> Iterator[None]:
    """A traced runner turns on pydantic-ai's instrumentation for the process: undo it."""
    yield
    from flujo_otel import tracing
    from pydantic_ai import Agent

    if tracing._installed:
        Agent.instrument_all(False)
        tracing._installed = False


def _parent(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> str | None:
    if span.parent is None:
        return None
    return next((s.name for s in spans if s.context.span_id == span.parent.span_id), "?")


def _raw_forms() -> set[str]:
    return {form for raw in (EMAIL, CARD) for form in (raw, json.dumps(raw)[1:-1])}


@pytest.mark.usefixtures("_instrumentation_reset")
async def test_operations_of_the_real_plugins_are_spans_in_the_runs_trace(
    tmp_path: Path,
) -> None:
    _require_sandbox()
    exporter = _Kept()
    otel = OtelPlugin(exporter=lambda resolved: exporter, environ={})
    config = _config(tmp_path, otel, otel_toml="enabled = true", sandbox_toml='backend = "local"')
    result = await _run(config)
    spans = list(exporter.get_finished_spans())
    named: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)

    [sandbox] = named["sandbox.execute"]
    assert _parent(sandbox, spans) == f"execute_tool {CODE_TOOL}"
    assert sandbox.context.trace_id == trace_id_of(result.run_id)
    assert dict(sandbox.attributes or {}) | {"flujo.sandbox.duration_ms": 0} == {
        "flujo.operation": "sandbox.execute",
        "openinference.span.kind": "TOOL",
        "flujo.sandbox.backend": "local",
        "flujo.sandbox.language": "python",
        "flujo.sandbox.files": 0,
        "flujo.sandbox.timeout_s": 20.0,  # [sandbox] timeout_s, as the backend enforced it
        "flujo.sandbox.exit_code": 0,
        "flujo.sandbox.timed_out": False,
        "flujo.sandbox.truncated": False,
        "flujo.sandbox.artifacts": 0,
        "flujo.sandbox.duration_ms": 0,
        "flujo.sandbox.stdout_bytes": len("149.9\n"),
        "flujo.sandbox.stderr_bytes": 0,
    }

    [retrieve] = named["memory.retrieve"]
    assert _parent(retrieve, spans) == "step recall"
    assert (retrieve.attributes or {})["flujo.memory.store"] == "memory"

    for name in ("memory.index", "eval.evaluate"):
        [span] = named[name]
        assert span.parent is None, name  # after the run, apart from it: linked
        assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [
            (trace_id_of(result.run_id), root_span_id_of(result.run_id))
        ], name
        assert span.status.status_code is StatusCode.OK, span.status
    [evaluation] = named["eval.evaluate"]
    assert (evaluation.attributes or {})["flujo.eval.score"] == 1.0

    carried = json.dumps(
        [
            [s.name, dict(s.attributes or {}), [dict(e.attributes or {}) for e in s.events]]
            for s in spans
        ],
        ensure_ascii=False,
    )
    assert [form for form in _raw_forms() if form in carried] == []


class _Sidecar(BaseHTTPRequestHandler):
    """Stands in for `flujo sandbox serve` on loopback: records each request's trace context
    and answers a successful execution (the real sidecar exposes no request headers)."""

    seen: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.seen.append(self.headers.get("traceparent", ""))
        body = json.dumps(
            {
                "stdout": "149.9\n",
                "stderr": "",
                "exit_code": 0,
                "timed_out": False,
                "error": None,
                "limits": {"memory_mb": None, "cpu_s": None, "pids": None, "network": False},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.usefixtures("_instrumentation_reset")
async def test_the_sidecar_receives_the_sandbox_executions_trace_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sidecar)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Sidecar.seen = []
    monkeypatch.setenv("FLUJO_SANDBOX_TOKEN", "integration-token-0123456789")
    try:
        exporter = _Kept()
        otel = OtelPlugin(exporter=lambda resolved: exporter, environ={})
        url = f"http://127.0.0.1:{server.server_port}"
        config = _config(
            tmp_path,
            otel,
            otel_toml="enabled = true",
            sandbox_toml=f'backend = "remote"\napi_url = "{url}"\ntrust_remote_limits = true',
        )
        await _run(config)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    [sandbox] = [s for s in exporter.get_finished_spans() if s.name == "sandbox.execute"]
    ctx = sandbox.context
    assert _Sidecar.seen == [f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"]
    assert (sandbox.attributes or {})["flujo.sandbox.backend"] == "remote"


@pytest.mark.timeout(STARTUP_S + INGEST_S + 180)
@pytest.mark.usefixtures("_instrumentation_reset")
async def test_phoenix_shows_the_run_with_its_sandbox_call_as_one_scrubbed_tree(
    phoenix: str, tmp_path: Path
) -> None:
    _require_sandbox()
    otel = OtelPlugin(environ={})  # the real OTLP/HTTP exporter
    config = _config(
        tmp_path, otel, otel_toml=f'endpoint = "{phoenix}"', sandbox_toml='backend = "local"'
    )
    result = await _run(config)

    # run, 2 steps, agent, 4 model calls, 3 tools, sandbox, retrieval (and the linked
    # indexing and evaluation, in traces of their own)
    spans = phoenix_spans(phoenix, trace_id_hex(result.run_id), expected=13)
    by_id = {s["context"]["span_id"]: s for s in spans}
    roots = [s for s in spans if not s.get("parent_id")]
    assert [r["name"] for r in roots] == ["run desk"]
    assert all(not s.get("parent_id") or s["parent_id"] in by_id for s in spans), "orphans"

    def parent(name: str) -> str:
        span = next(s for s in spans if s["name"] == name)
        return str(by_id[span["parent_id"]]["name"])

    assert parent("step triage") == "run desk"
    assert parent("step recall") == "run desk"
    assert parent("invoke_agent agent") == "step triage"
    assert parent(f"execute_tool {CODE_TOOL}") == "invoke_agent agent"
    assert parent("sandbox.execute") == f"execute_tool {CODE_TOOL}"
    assert parent("memory.retrieve") == "step recall"
    sandbox = next(s for s in spans if s["name"] == "sandbox.execute")
    assert sandbox["attributes"]["flujo.sandbox.exit_code"] == 0

    refused = next(s for s in spans if s["name"] == "execute_tool refund")
    events = [e["attributes"] for e in refused["events"] if e["name"] == EVENT_POLICY]
    # pii lets the call through, the allowlist refuses it
    decisions = [(e["flujo.policy.name"], e["flujo.policy.decision"]) for e in events]
    assert decisions == [("pii", "allow"), ("tool_allowlist", "deny")]

    everything = json.dumps(spans, ensure_ascii=False)
    assert [form for form in _raw_forms() if form in everything] == []
    assert "EMAIL" in everything  # the address was there, as a placeholder

    # The indexing and the evaluation, in traces of their own (Phoenix's REST API does not
    # return links: they carry the run id they serve).
    apart = await asyncio.to_thread(_spans_of_run, phoenix, result.run_id)
    assert {s["name"] for s in apart} == {"eval.evaluate", "memory.index"}
    assert all(s["context"]["trace_id"] != trace_id_hex(result.run_id) for s in apart)
    evaluation = next(s for s in apart if s["name"] == "eval.evaluate")
    assert evaluation["attributes"]["flujo.eval.score"] == 1.0


def _spans_of_run(url: str, run_id: str) -> list[dict[str, Any]]:
    """The operation spans outside the run's trace that name run ``run_id``."""
    import time

    import httpx

    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + INGEST_S
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/v1/projects/default/spans", params={"limit": 1000}, timeout=10)
        answer.raise_for_status()
        found = [
            s
            for s in answer.json()["data"]
            if s["name"] in ("eval.evaluate", "memory.index")
            and s["attributes"].get("flujo.run_id") == run_id
        ]
        if len(found) >= 2:
            break
        time.sleep(0.5)
    return found
