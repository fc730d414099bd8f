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

Data also reaches a span encoded where no JSON parse finds it: JSON escapes in the middle of
a text (``prefix {"n": "Jos\\u00e9"}``, a JSON text inside a JSON string), an exception's
``repr`` (``b'Jos\\xc3\\xa9'``), octal and ECMAScript escapes, a URL's query
(``jose%40example.com``, ``%u0040``), quoted-printable mail text (``=40``), HTML entities,
base64 or hex blobs, other Unicode forms (fullwidth digits, zero-width characters). So every
text that holds such an encoding is also scrubbed *decoded* (:func:`flujo.plugin.decoded`); when the
decoded form held something to scrub, the decoded, scrubbed form is exported instead of the
original. A text without encodings costs one scan.

Never fail open: when a scrub raises or answers something of another shape, the batch is
scrubbed again span by span, and the spans that still fail are dropped (and counted in the
log, without their text), never exported as they were.

The exporter runs in the batch processor's own thread, so ``scrub`` (sync or async) runs
there, on an event loop of that thread; so does turning flujo-otel's own span records
(:mod:`flujo_otel.records`) into the SDK's spans, scrubbed or not.
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

from flujo.plugin import decoded
from flujo_otel.records import SpanRecord

if TYPE_CHECKING:
    from flujo.application.scrubbing import Scrubbing

log = logging.getLogger("flujo_otel")

_JSON = 1
_PLAIN = 0


_SCALARS = (int, float, bool, type(None))


def _decoded_leaves(value: Any) -> Any:
    """``value`` (strings, lists, dicts of an unpacked attribute) with every text decoded."""
    if isinstance(value, str):
        return decoded(value)
    if isinstance(value, list):
        return [_decoded_leaves(v) for v in value]
    if isinstance(value, dict):
        return {decoded(k): _decoded_leaves(v) for k, v in value.items()}
    return value


def _unpacked(value: Any) -> tuple[int, Any]:
    """``(kind, value to scrub)`` for one attribute value."""
    if type(value) in _SCALARS:  # most values; spares the ABC checks below
        return _PLAIN, value
    if isinstance(value, str):
        text = value.lstrip()
        if text[:1] in ("{", "[", '"'):
            try:
                return _JSON, json.loads(value)
            except (ValueError, RecursionError):  # nested deeper than parsing goes: a text
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
        # (slot, its decoded form's index in ``values``) for the slots whose text held an
        # encoding; the decoded forms are appended after every slot (see ``all_values``).
        self._decoded: list[tuple[int, Any]] = []

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
        if not isinstance(unpacked, _SCALARS):
            plain = _decoded_leaves(unpacked)
            if plain != unpacked:
                self._decoded.append((slot, plain))
        if key is not None:
            self._slots[key] = slot
        return slot

    def all_values(self) -> list[Any]:
        """What to scrub: every slot's value, then the decoded forms."""
        return self.values + [plain for _, plain in self._decoded]

    def attributes(self, scrubbed: list[Any]) -> list[Any]:
        """Each slot's scrubbed value as an attribute value (converted once per slot), given
        the scrubbed :meth:`all_values`. A slot whose decoded form held something to scrub
        gets that decoded, scrubbed form: its original would carry the data encoded."""
        slots = len(self.values)
        chosen = scrubbed[:slots]
        for n, (slot, plain) in enumerate(self._decoded):
            if scrubbed[slots + n] != plain:
                chosen[slot] = scrubbed[slots + n]
        return [_attribute(kind, value) for kind, value in zip(self.kinds, chosen, strict=True)]

    def add_attrs(self, attrs: Mapping[str, Any] | None) -> list[tuple[str, int]]:
        return [(key, self.add(value)) for key, value in (attrs or {}).items()]


def _readable(span: ReadableSpan) -> ReadableSpan:
    """``span``, or the SDK's span of a :class:`~flujo_otel.records.SpanRecord`."""
    return span.readable() if isinstance(span, SpanRecord) else span


class ScrubbingExporter(SpanExporter):
    """Scrub with ``scrubbing``, then export with ``inner``."""

    def __init__(self, inner: SpanExporter, scrubbing: Scrubbing) -> None:
        self._inner = inner
        self._scrubbing = scrubbing
        self._resources: dict[int, Resource] = {}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self._scrubbing.active:
            return self._inner.export([_readable(span) for span in spans])
        try:
            scrubbed = self._scrubbed(spans)
        except Exception:  # noqa: BLE001 - any failure: retried span by span, never raw
            # One span a policy cannot scrub must not take the other runs' spans of its batch
            # down with it: scrub span by span, and drop (never export raw) only the failures.
            scrubbed, dropped = self._each_scrubbed(spans)
            log.error("flujo-otel: scrubbing %d of %d spans failed; dropped", dropped, len(spans))
            if not scrubbed:
                return SpanExportResult.FAILURE
            result = self._inner.export(scrubbed)
            return SpanExportResult.FAILURE if dropped else result
        return self._inner.export(scrubbed)

    def _each_scrubbed(self, spans: Sequence[ReadableSpan]) -> tuple[list[ReadableSpan], int]:
        kept: list[ReadableSpan] = []
        for span in spans:
            try:
                kept += self._scrubbed([span])
            except Exception:  # noqa: BLE001 - dropped, never exported raw
                # Not the span's name nor the error's text: both may hold what failed to scrub.
                log.error("flujo-otel: scrubbing a span failed; it was dropped")
        return kept, len(spans) - len(kept)

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
            out = flat.attributes(self._scrub(flat.all_values()))
            cached = Resource({k: out[i] for k, i in slots}, resource.schema_url)
            self._resources[id(resource)] = cached
        return cached

    def _scrubbed(self, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
        flat = _Flat()
        plans = []
        for span in spans:
            if isinstance(span, SpanRecord):  # flujo-otel's own (see flujo_otel.records)
                description = span.status[1]
                attributes: Mapping[str, Any] | None = span.attributes
                recorded = span.recorded_events()
            else:
                description = span.status.description
                attributes = span.attributes
                recorded = [(e.name, e.attributes or {}, e.timestamp) for e in span.events]
            name = flat.add(span.name)
            status = flat.add(description or "") if description else None
            attrs = flat.add_attrs(attributes)
            events = [(flat.add(n), flat.add_attrs(a), at) for n, a, at in recorded]
            links = [(flat.add_attrs(link.attributes), link) for link in span.links]
            plans.append((span, name, status, attrs, events, links))
        converted = flat.attributes(self._scrub(flat.all_values()))
        value = converted.__getitem__

        def attrs_of(slots: list[tuple[str, int]]) -> dict[str, Any]:
            return {key: converted[i] for key, i in slots}

        result: list[ReadableSpan] = []
        for span, name, status, attrs, events, links in plans:
            scrubbed_links = [Link(link.context, attrs_of(a)) for a, link in links]
            if isinstance(span, SpanRecord):
                result.append(
                    span.readable(
                        name=str(value(name)),
                        attributes=attrs_of(attrs),
                        events=[(str(value(n)), attrs_of(a), at) for n, a, at in events],
                        description=None if status is None else value(status),
                        resource=self._resource(span.owner.resource),
                        links=scrubbed_links,
                    )
                )
                continue
            result.append(
                ReadableSpan(
                    name=str(value(name)),
                    context=span.context,
                    parent=span.parent,
                    resource=self._resource(span.resource),
                    attributes=attrs_of(attrs),
                    events=[Event(str(value(n)), attrs_of(a), timestamp=at) for n, a, at in events],
                    links=scrubbed_links,
                    kind=span.kind,
                    status=Status(
                        span.status.status_code, None if status is None else value(status)
                    ),
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
