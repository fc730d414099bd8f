"""flujo-otel's own spans (a run's, a step's) as the hooks record them on the run's path.

A :class:`SpanRecord` is plain values: no lock, no attribute checks, no copy at its end. The
hooks fill it in; :meth:`SpanRecord.end` hands it to the batch processor's queue as it is
(the processor only reads its ``context``, to drop what is not sampled); the exporter
(:class:`flujo_otel.scrub.ScrubbingExporter`), in the processor's own thread, turns it into
the SDK's ``ReadableSpan``. So everything the SDK would do per span beyond recording its
values (checking and copying attributes, building the span twice, taking locks) happens off
the run's path, where the encoding and sending happen too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

NO_LIMITS = SpanLimits(
    max_attribute_length=SpanLimits.UNSET, max_span_attribute_length=SpanLimits.UNSET
)
"""No truncation before the scrub: half an e-mail address is no longer recognized."""

RecordedEvent = tuple[str, dict[str, Any], int]
"""A span event as recorded: name, attributes, time (ns since the epoch)."""


class RecordOwner(Protocol):
    """Where a record's spans go and what they are stamped with (a :class:`Tracing`)."""

    @property
    def processor(self) -> SpanProcessor: ...

    @property
    def resource(self) -> Resource: ...

    @property
    def scope(self) -> InstrumentationScope: ...


class SpanRecord:
    """One span recorded as plain values (see the module)."""

    __slots__ = (
        "attributes",
        "context",
        "end_time",
        "ended_ns",
        "events",
        "links",
        "name",
        "owner",
        "parent",
        "start_time",
        "status",
        "top_level",
    )

    def __init__(
        self,
        owner: RecordOwner,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, Any],
        links: Sequence[Link] = (),
        top_level: bool = True,
    ) -> None:
        self.owner = owner
        self.name = name
        self.context = context
        self.parent = parent
        self.attributes = attributes
        self.links = links
        self.top_level = top_level
        self.start_time = time.time_ns()
        self.end_time: int | None = None
        self.ended_ns: int | None = None
        """When a step's body returned: its span's end (its completion is observed later)."""
        self.status: tuple[StatusCode, str | None] = (StatusCode.UNSET, None)
        self.events: list[RecordedEvent] | None = None

    def add_event(self, name: str, attributes: dict[str, Any]) -> None:
        if self.end_time is not None:
            # Ended: the export thread may be reading it (the SDK ignores it likewise).
            return
        if self.events is None:
            self.events = []
        self.events.append((name, attributes, time.time_ns()))

    def end(self, end_time: int | None = None) -> None:
        """End the span and hand it to the batch processor (once; nothing changes it after)."""
        if self.end_time is not None:
            return
        self.end_time = end_time or time.time_ns()
        # The batch processor reads only ``.context`` before our exporter converts the record
        # (``readable``); nothing else ever receives it.
        self.owner.processor.on_end(cast(ReadableSpan, self))

    def recorded_events(self) -> Sequence[RecordedEvent]:
        return self.events or ()

    def readable(
        self,
        name: str | None = None,
        attributes: dict[str, Any] | None = None,
        events: Sequence[RecordedEvent] | None = None,
        description: str | None = None,
        resource: Resource | None = None,
        links: Sequence[Link] | None = None,
    ) -> ReadableSpan:
        """The SDK's span of this record (in the export thread). The keyword arguments replace
        the recorded values (the exporter passes the scrubbed ones)."""
        code, recorded = self.status
        if description is None:
            description = recorded
        if attributes is None:
            attributes = self.attributes
        return ReadableSpan(
            name=self.name if name is None else name,
            context=self.context,
            parent=self.parent,
            resource=self.owner.resource if resource is None else resource,
            # Checked as the SDK checks a span's values (invalid ones dropped, with a warning).
            attributes=BoundedAttributes(
                NO_LIMITS.max_span_attributes, attributes, max_value_len=None
            ),
            events=[
                Event(
                    event_name,
                    BoundedAttributes(
                        NO_LIMITS.max_event_attributes, event_attributes, max_value_len=None
                    ),
                    timestamp=at,
                )
                for event_name, event_attributes, at in (
                    self.recorded_events() if events is None else events
                )
            ],
            links=self.links if links is None else links,
            kind=SpanKind.INTERNAL,
            # A description only goes with an error (the SDK ignores it otherwise, warning).
            status=Status(code, description if code is StatusCode.ERROR else None),
            start_time=self.start_time,
            end_time=self.end_time,
            instrumentation_scope=self.owner.scope,
        )
