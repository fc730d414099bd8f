"""A step's span as the hooks record it (:class:`flujo_otel.records.SpanRecord`), turned into
the SDK's span in the export thread: the same values the SDK would have exported, checked the
same way, and nothing added to it once it has been handed over."""

from __future__ import annotations

from typing import Any

from flujo_otel.records import SpanRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, StatusCode, TraceFlags


class _Owner:
    def __init__(self) -> None:
        self.ended: list[Any] = []
        self.resource = Resource.create({"service.name": "test"})
        self.scope = InstrumentationScope("flujo_otel")

    @property
    def processor(self) -> _Owner:
        return self

    def on_end(self, span: Any) -> None:
        self.ended.append(span)


def _record(owner: _Owner) -> SpanRecord:
    ids = SpanContext(1, 2, False, TraceFlags(TraceFlags.SAMPLED))
    parent = SpanContext(1, 3, False, TraceFlags(TraceFlags.SAMPLED))
    return SpanRecord(owner, "step s", ids, parent, {"flujo.step.name": "s", "n": 1})


def test_a_record_becomes_the_span_the_sdk_would_have_made() -> None:
    owner = _Owner()
    record = _record(owner)
    record.attributes["bad"] = object()  # checked as the SDK checks its own spans' values
    record.add_event("flujo.policy_decision", {"flujo.policy.decision": "deny"})
    record.status = (StatusCode.OK, "ignored: only errors carry a description")
    record.end()
    record.end()  # once
    assert owner.ended == [record]
    span = record.readable()
    assert isinstance(span, ReadableSpan)
    assert (span.name, span.context.span_id, span.parent and span.parent.span_id) == (
        "step s",
        2,
        3,
    )
    # (this SDK keeps the key of a value that is no attribute value, without the value)
    assert dict(span.attributes or {}) == {"flujo.step.name": "s", "n": 1, "bad": None}
    assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
        ("flujo.policy_decision", {"flujo.policy.decision": "deny"})
    ]
    assert span.status.status_code is StatusCode.OK
    assert span.status.description is None
    assert span.start_time is not None
    assert span.end_time is not None
    assert span.start_time <= span.end_time
    assert span.resource is owner.resource
    assert span.instrumentation_scope is owner.scope


def test_nothing_is_added_to_a_record_once_it_was_handed_over() -> None:
    owner = _Owner()
    record = _record(owner)
    record.status = (StatusCode.ERROR, "boom")
    record.end()
    record.add_event("late", {"x": 1})  # e.g. from a task the step left running
    span = record.readable()
    assert span.events == ()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "boom"
