"""Nothing raw leaves the process: an exporter wrapper that passes every span through the run's
policies' ``scrub`` before the real exporter sees it.

What is scrubbed, per span: its name, its status message, every attribute value, every
event's name and attribute values, every link's attribute values; and the resource's
attribute values (once). Attribute *keys* are names chosen by code (ours, pydantic-ai's), not
data, and are kept.

A text attribute that holds JSON (pydantic-ai's messages, tool arguments) is parsed first and
its structure scrubbed, then written back with non-ASCII characters as they are: a policy
looking for ``José`` must not be fooled by ``Jos\\u00e9``. Bytes cannot be scrubbed and are
replaced by their length.

Never fail open: when a scrub raises or answers something of another shape, the whole batch
is dropped (and logged), never exported as it was.

The exporter runs in the batch processor's own thread, so ``scrub`` (sync or async) runs
there, on an event loop of that thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status

if TYPE_CHECKING:
    from flujo.application.scrubbing import Scrubbing

log = logging.getLogger("flujo_otel")

_JSON = 1
_PLAIN = 0


_SCALARS = (int, float, bool, type(None))


def _unpacked(value: Any) -> tuple[int, Any]:
    """``(kind, value to scrub)`` for one attribute value."""
    if type(value) in _SCALARS:  # most values; spares the ABC checks below
        return _PLAIN, value
    if isinstance(value, str):
        text = value.lstrip()
        if text[:1] in ("{", "[", '"'):
            try:
                return _JSON, json.loads(value)
            except ValueError:
                pass
        return _PLAIN, value
    if isinstance(value, bytes | bytearray):
        return _PLAIN, f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return _PLAIN, {str(k): _unpacked(v)[1] for k, v in value.items()}
    if isinstance(value, Sequence):
        return _PLAIN, [_unpacked(v)[1] for v in value]
    return _PLAIN, value


def _attribute(kind: int, value: Any) -> Any:
    """A scrubbed value as an attribute value OpenTelemetry accepts."""
    if kind == _JSON:
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, list) and all(isinstance(v, bool | int | float) for v in value):
        return value
    return json.dumps(value, ensure_ascii=False)


_HASHABLE = (str, *_SCALARS)


class _Flat:
    """Every scrubbable value of some spans in one list (one ``scrub`` call per batch), and
    where each came from.

    A batch repeats most of its values (the run id, ``CHAIN``, statuses, step names, small
    inputs): an identical scalar is unpacked, scrubbed and converted once per batch and its
    slot shared. Scrubbing is a function of the value, so sharing its result hides nothing."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.kinds: list[int] = []
        self._slots: dict[tuple[type, Any], int] = {}

    def add(self, value: Any) -> int:
        # The type is part of the key: 1, 1.0 and True are equal (and hash alike) in Python
        # but are different attribute values.
        key = (type(value), value) if type(value) in _HASHABLE else None
        if key is not None:
            slot = self._slots.get(key)
            if slot is not None:
                return slot
        kind, unpacked = _unpacked(value)
        self.values.append(unpacked)
        self.kinds.append(kind)
        slot = len(self.values) - 1
        if key is not None:
            self._slots[key] = slot
        return slot

    def attributes(self, scrubbed: list[Any]) -> list[Any]:
        """Each slot's scrubbed value as an attribute value (converted once per slot)."""
        return [_attribute(kind, value) for kind, value in zip(self.kinds, scrubbed, strict=True)]

    def add_attrs(self, attrs: Mapping[str, Any] | None) -> list[tuple[str, int]]:
        return [(key, self.add(value)) for key, value in (attrs or {}).items()]


class ScrubbingExporter(SpanExporter):
    """Scrub with ``scrubbing``, then export with ``inner``."""

    def __init__(self, inner: SpanExporter, scrubbing: Scrubbing) -> None:
        self._inner = inner
        self._scrubbing = scrubbing
        self._resources: dict[int, Resource] = {}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self._scrubbing.active:
            return self._inner.export(spans)
        try:
            scrubbed = self._scrubbed(spans)
        except Exception:
            log.exception("flujo-otel: scrubbing %d spans failed; they were dropped", len(spans))
            return SpanExportResult.FAILURE
        return self._inner.export(scrubbed)

    def _scrub(self, values: list[Any]) -> list[Any]:
        result = asyncio.run(self._scrubbing.scrub(None, values))
        if not isinstance(result, list) or len(result) != len(values):
            raise ValueError("a policy's scrub changed the shape of the span values")
        return result

    def _resource(self, resource: Resource) -> Resource:
        cached = self._resources.get(id(resource))
        if cached is None:
            flat = _Flat()
            slots = flat.add_attrs(resource.attributes)
            out = self._scrub(flat.values)
            cached = Resource(
                {k: _attribute(flat.kinds[i], out[i]) for k, i in slots}, resource.schema_url
            )
            self._resources[id(resource)] = cached
        return cached

    def _scrubbed(self, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
        flat = _Flat()
        plans = []
        for span in spans:
            name = flat.add(span.name)
            status = flat.add(span.status.description or "")
            attrs = flat.add_attrs(span.attributes)
            events = [(flat.add(e.name), flat.add_attrs(e.attributes), e) for e in span.events]
            links = [(flat.add_attrs(link.attributes), link) for link in span.links]
            plans.append((span, name, status, attrs, events, links))
        converted = flat.attributes(self._scrub(flat.values))
        value = converted.__getitem__

        def attrs_of(slots: list[tuple[str, int]]) -> dict[str, Any]:
            return {key: converted[i] for key, i in slots}

        result: list[ReadableSpan] = []
        for span, name, status, attrs, events, links in plans:
            description = value(status) if span.status.description else None
            result.append(
                ReadableSpan(
                    name=str(value(name)),
                    context=span.context,
                    parent=span.parent,
                    resource=self._resource(span.resource),
                    attributes=attrs_of(attrs),
                    events=[
                        Event(str(value(n)), attrs_of(a), timestamp=e.timestamp)
                        for n, a, e in events
                    ],
                    links=[Link(link.context, attrs_of(a)) for a, link in links],
                    kind=span.kind,
                    status=Status(span.status.status_code, description),
                    start_time=span.start_time,
                    end_time=span.end_time,
                    instrumentation_scope=span.instrumentation_scope,
                )
            )
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
