"""A real runner's trace, exported to an in-memory exporter: one tree (run, steps, inner steps,
pydantic-ai's agent/model/tool spans), policy decisions as events, errors as status, and no
raw value anywhere in what is exported."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flujo_otel.ids import root_span_id_of, trace_id_of
from flujo_otel.tracing import EVENT_POLICY
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from otel_testkit import EMAIL, INPUT, PiiPolicy, leaks, pipeline, texts

from flujo import Flujo, Pipeline, RunStatus, Step, make_agent_async
from flujo.plugin import outgoing_headers
from flujo.testing.models import call_tool, scripted_model


def _by_id(spans: Sequence[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans}


def _ancestors(span: ReadableSpan, spans: dict[int, ReadableSpan]) -> list[str]:
    names = []
    while span.parent is not None and span.parent.span_id in spans:
        span = spans[span.parent.span_id]
        names.append(span.name)
    return names


async def _run(make_config: Any, exporter: InMemorySpanExporter) -> tuple[Any, list[ReadableSpan]]:
    async with Flujo(pipeline(), config=make_config(), policies=[PiiPolicy()]) as runner:
        result = await runner.run_async(INPUT)
    return result, list(exporter.get_finished_spans())


async def test_one_tree_run_steps_agent_model_tools(
    make_config: Any, exporter: InMemorySpanExporter
) -> None:
    result, spans = await _run(make_config, exporter)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert {s.context.trace_id for s in spans} == {trace_id_of(result.run_id)}
    roots = [s for s in spans if s.parent is None]
    assert [r.name for r in roots] == ["run support"]
    assert roots[0].context.span_id == root_span_id_of(result.run_id)
    by_id = _by_id(spans)
    assert all(s.parent is None or s.parent.span_id in by_id for s in spans), "orphan spans"
    steps = {s.name: s for s in spans if s.name.startswith("step ")}
    assert set(steps) == {
        "step triage",
        "step checks",
        "step checks/fraud/score",
        "step checks/notify/mail",
    }
    assert _ancestors(steps["step checks/fraud/score"], by_id) == ["step checks", "run support"]
    assert _ancestors(steps["step triage"], by_id) == ["run support"]
    agent_spans = [s for s in spans if "step triage" in _ancestors(s, by_id)]
    assert any(s.attributes and s.attributes.get("gen_ai.request.model") for s in agent_spans)
    tools = [s for s in agent_spans if "lookup_customer" in s.name or "refund" in s.name]
    assert len(tools) == 2, [s.name for s in agent_spans]
    assert steps["step triage"].attributes["gen_ai.usage.input_tokens"] == 30
    assert roots[0].status.status_code is StatusCode.OK
    assert steps["step triage"].status.status_code is StatusCode.OK


async def test_policy_decisions_are_events_without_the_inspected_values(
    make_config: Any, exporter: InMemorySpanExporter
) -> None:
    _, spans = await _run(make_config, exporter)
    by_id = _by_id(spans)
    events = [(s, e) for s in spans for e in s.events if e.name == EVENT_POLICY]
    denied = [(s, e) for s, e in events if e.attributes["flujo.policy.decision"] == "deny"]
    assert len(denied) == 1, [dict(e.attributes or {}) for _, e in events]
    span, event = denied[0]
    assert "refund" in span.name, span.name  # on the tool's own span
    assert "step triage" in _ancestors(span, by_id)
    assert dict(event.attributes or {}) == {
        "flujo.policy.name": "test_pii",
        "flujo.policy.decision": "deny",
        "flujo.policy.where": "tool_call",
        "flujo.policy.tool": "refund",
        "flujo.policy.reason": "refunds need a person",
    }


async def test_nothing_raw_is_exported(make_config: Any, exporter: InMemorySpanExporter) -> None:
    _, spans = await _run(make_config, exporter)
    assert leaks(spans) == []
    carried = " ".join(text for _, text in texts(spans))
    # The values were there (the agent saw them) and were scrubbed, not left out.
    for placeholder in ("<EMAIL>", "<CARD>", "<NAME>"):
        assert placeholder in carried


def broken(text: str) -> str:
    raise ValueError(f"no account for {EMAIL}")


async def test_a_failed_step_sets_the_error_status_with_the_scrubbed_message(
    make_config: Any, exporter: InMemorySpanExporter
) -> None:
    pipeline = Pipeline([Step.from_callable(broken, name="lookup")], name="failing")
    async with Flujo(pipeline, config=make_config(), policies=[PiiPolicy()]) as runner:
        result = await runner.run_async(INPUT)
    assert result.status is RunStatus.FAILED
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for name in ("step lookup", "run failing"):
        assert spans[name].status.status_code is StatusCode.ERROR
        assert "no account for <EMAIL>" in (spans[name].status.description or "")
    assert leaks(list(spans.values())) == []


async def test_outgoing_calls_carry_the_trace_context_of_their_span(
    make_config: Any, exporter: InMemorySpanExporter
) -> None:
    """What the sandbox's remote backend and OpenAPI clients send (the core's
    ``outgoing_headers()``): the W3C ``traceparent`` of the span the call is made in."""
    seen: dict[str, dict[str, str]] = {}

    async def fetch_order(order_id: str) -> str:
        """Fetch an order from the order service."""
        seen["tool"] = outgoing_headers()
        return "shipped"

    def call_service(text: str) -> str:
        seen["step"] = outgoing_headers()
        return text

    model = scripted_model(call_tool("fetch_order", order_id="A-1"), "done")
    agent = make_agent_async(model, "Help.", tools=[fetch_order])
    pipeline = Pipeline([Step("agent", agent), Step.from_callable(call_service)], name="calls")
    async with Flujo(pipeline, config=make_config()) as runner:
        result = await runner.run_async("where is A-1?")
        assert outgoing_headers() == {}  # outside a step: nothing
    assert result.status is RunStatus.SUCCEEDED, result.error
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for where, span_name in (("tool", "execute_tool fetch_order"), ("step", "step call_service")):
        span = spans[span_name].context
        assert seen[where]["traceparent"] == f"00-{span.trace_id:032x}-{span.span_id:016x}-01"


async def test_a_run_sampled_out_exports_nothing_and_runs_the_same(
    make_config: Any, exporter: InMemorySpanExporter
) -> None:
    async with Flujo(
        pipeline(), config=make_config("[otel]\nenabled = true\nsample_ratio = 0.0\n")
    ) as runner:
        result = await runner.run_async(INPUT)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert exporter.get_finished_spans() == ()


async def test_a_step_cancelled_out_of_the_core_ends_its_span_as_an_error(
    make_config: Any, exporter: InMemorySpanExporter
) -> None:
    import asyncio

    import pytest
    from opentelemetry import trace

    started = asyncio.Event()

    async def slow(x: int) -> int:
        started.set()
        await asyncio.sleep(60)
        return x

    flow = Pipeline([Step.from_callable(slow, name="slow")], name="cancelled")
    async with Flujo(flow, config=make_config()) as runner:
        task = asyncio.create_task(runner.run_async(1))
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["step slow"].status.status_code is StatusCode.ERROR
    assert "CancelledError" in (spans["step slow"].status.description or "")
    assert not trace.get_current_span().get_span_context().is_valid  # the context was restored


class _Guard:
    """Denies the input of the inner step ``checks/notify/mail`` (no tool span is current then:
    the decision is taken in the step itself)."""

    name = "guard"

    def inspect_input(self, context: Any, data: Any) -> tuple[Any, Any]:
        from flujo import PolicyDecision, PolicyViolation
        from flujo.domain.scope import current_step_scope

        scope = current_step_scope()
        if scope is not None and scope.step_name.endswith("mail"):
            raise PolicyViolation(self.name, "no mail today")
        return PolicyDecision.ALLOW, data


async def test_a_decision_taken_in_a_step_is_an_event_of_that_step_span(
    make_config: Any, exporter: InMemorySpanExporter
) -> None:
    flow = Pipeline(
        [
            Step.from_callable(str.upper, name="first"),
            Step.parallel(
                "checks",
                {
                    "fraud": Step.from_callable(str.lower, name="score"),
                    "notify": Step.from_callable(str.lower, name="mail"),
                },
            ),
        ],
        name="guarded",
    )
    async with Flujo(flow, config=make_config(), policies=[_Guard()]) as runner:
        result = await runner.run_async("hi")
    assert result.status is RunStatus.BLOCKED, result.error
    spans = list(exporter.get_finished_spans())
    events = [(s.name, dict(e.attributes or {})) for s in spans for e in s.events]
    denied = [(name, a) for name, a in events if a["flujo.policy.decision"] == "deny"]
    assert [(name, a["flujo.policy.where"]) for name, a in denied] == [
        ("step checks/notify/mail", "input")
    ], events
    by_name = {s.name: s for s in spans}
    assert by_name["step checks/notify/mail"].status.status_code is StatusCode.ERROR
    assert by_name["run guarded"].status.status_code is StatusCode.ERROR
