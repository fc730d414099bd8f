"""The exporter wrapper: everything a span carries is scrubbed, escaped JSON included; a
scrub that fails drops the batch (never exported raw)."""

from __future__ import annotations

import json
from typing import Any

from flujo_otel.scrub import ScrubbingExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode
from otel_testkit import CARD, EMAIL, NAME, PiiPolicy, leaks

from flujo import PipelineContext
from flujo.application.scrubbing import Scrubbing


def _spans(policy: Any) -> tuple[InMemorySpanExporter, ScrubbingExporter, TracerProvider]:
    inner = InMemorySpanExporter()
    wrapper = ScrubbingExporter(inner, Scrubbing([policy]))
    provider = TracerProvider(resource=Resource.create({"deployment.owner": EMAIL}))
    provider.add_span_processor(SimpleSpanProcessor(wrapper))
    return inner, wrapper, provider


def _emit(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span(f"lookup {EMAIL}") as other:
        other_ctx = other.get_span_context()
    span = tracer.start_span(
        "s",
        attributes={
            "escaped": json.dumps({"who": NAME, "card": CARD}),  # "Jos\u00e9 N\u00fa\u00f1ez"
            "plain": f"call {EMAIL}",
            "list": [EMAIL, "ok"],
            "blob": NAME.encode(),
            "tokens": 12,
        },
        links=[Link(other_ctx, {"why": EMAIL})],
    )
    span.add_event(f"saw {NAME}", {"card": CARD})
    span.set_status(Status(StatusCode.ERROR, f"no account for {EMAIL}"))
    span.end()


def test_every_part_of_a_span_is_scrubbed_escaped_json_included() -> None:
    inner, _, provider = _spans(PiiPolicy())
    _emit(provider)
    spans = inner.get_finished_spans()
    assert leaks(spans) == []
    span = next(s for s in spans if s.name == "s")
    attributes = dict(span.attributes or {})
    assert json.loads(str(attributes["escaped"])) == {"who": "<NAME>", "card": "<CARD>"}
    assert list(attributes["list"]) == ["<EMAIL>", "ok"]
    assert attributes["blob"] == f"<{len(NAME.encode())} bytes>"
    assert attributes["tokens"] == 12
    assert span.status.description == "no account for <EMAIL>"
    assert span.resource.attributes["deployment.owner"] == "<EMAIL>"


class Exploding(PiiPolicy):
    def scrub(self, context: PipelineContext, value: Any) -> Any:
        raise RuntimeError("scrubber down")


class Reshaping(PiiPolicy):
    def scrub(self, context: PipelineContext, value: Any) -> Any:
        return "[redacted]"


def test_a_failing_or_reshaping_scrub_drops_the_batch() -> None:
    for policy in (Exploding(), Reshaping()):
        inner, wrapper, provider = _spans(policy)
        _emit(provider)
        assert inner.get_finished_spans() == ()
        assert wrapper.export([]) in (SpanExportResult.SUCCESS, SpanExportResult.FAILURE)


def test_without_scrubbing_policies_spans_pass_unchanged() -> None:
    inner = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingExporter(inner, Scrubbing([]))))
    provider.get_tracer("t").start_span("plain", attributes={"a": "b"}).end()
    assert [dict(s.attributes or {}) for s in inner.get_finished_spans()] == [{"a": "b"}]


def test_repeated_values_in_a_batch_are_each_scrubbed_and_keep_their_types() -> None:
    """The exporter scrubs a value repeated across a batch once: every place still gets the
    scrubbed value, and equal values of different types (1, 1.0, True) stay apart."""
    inner = InMemorySpanExporter()
    calls: list[int] = []

    class Counting(PiiPolicy):
        def scrub(self, context: PipelineContext, value: Any) -> Any:
            calls.append(len(value))
            return super().scrub(context, value)

    exporter = ScrubbingExporter(inner, Scrubbing([Counting()]))
    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    spans = []
    for i in range(3):
        span = tracer.start_span(
            f"step {EMAIL}",
            attributes={"who": EMAIL, "n": 1, "x": 1.0, "ok": True, "i": i, "in": f'"{NAME}"'},
        )
        span.add_event(EMAIL, {"who": EMAIL})
        span.end()
        spans.append(span)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    out = inner.get_finished_spans()
    assert leaks(out) == []
    for got in out:
        attributes = dict(got.attributes or {})
        assert got.name == "step <EMAIL>"
        assert attributes["who"] == "<EMAIL>"
        assert "<NAME>" in str(attributes["in"])
        assert [type(attributes[k]) for k in ("n", "x", "ok")] == [int, float, bool]
        assert got.events[0].name == "<EMAIL>"
        assert dict(got.events[0].attributes or {}) == {"who": "<EMAIL>"}
    assert [a["i"] for a in (dict(s.attributes or {}) for s in out)] == [0, 1, 2]
    batch_call, _resource_call = calls  # 3 spans x 10 values, deduplicated
    assert batch_call < 3 * 10
