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
text that holds such an encoding is also scrubbed *decoded* (:func:`decoded`); when the
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
import base64
import binascii
import html
import json
import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status

from flujo_otel.records import SpanRecord

if TYPE_CHECKING:
    from flujo.application.scrubbing import Scrubbing

log = logging.getLogger("flujo_otel")

_JSON = 1
_PLAIN = 0


_SCALARS = (int, float, bool, type(None))

# What may hide data from a policy reading text: backslash escapes (JSON's, Python's),
# percent-encoding (and ``+`` for a space in a query), HTML entities, control characters,
# base64 and hex blobs, and non-ASCII (other Unicode forms of the same characters).
# A run of base64 or hex characters: a blob when ``_is_blob`` says so (plain C-speed scans;
# a pattern with look-arounds cost a microsecond per character of every text).
_BLOB = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")
# Control characters that split a value without showing (UTF-16 text read a byte per char
# has a NUL after every ASCII letter).
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+")
_ESCAPES = re.compile(
    r"(?:\\u[0-9a-fA-F]{4})+|(?:\\x[0-9a-fA-F]{2})+|\\U[0-9a-fA-F]{8}|\\u\{[0-9a-fA-F]{1,6}\}"
    r"|(?:\\[0-3][0-7]{2})+|\\[\\\"'/bfnrt]"
)
# Quoted-printable (RFC 2045: mail bodies, ``=40`` for ``@``), with its soft line breaks.
_QUOTED_PRINTABLE = re.compile(r"(?:=[0-9A-F]{2})+")
_SIMPLE_ESCAPES = {
    "\\": "\\",
    '"': '"',
    "'": "'",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_PERCENT = re.compile(r"(?:%[0-9a-fA-F]{2})+")
_PERCENT_U = re.compile(r"%u([0-9a-fA-F]{4})")  # IIS's and JavaScript escape()'s form
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){6,}")
_DECODE_ROUNDS = 4  # an encoding of an encoding...: bounded, whatever the text holds


def _bytes_text(raw: bytes) -> str:
    """Bytes as the text they most likely hold: UTF-8, else Latin-1 (a byte per char)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _unescaped(match: re.Match[str]) -> str:
    found = match.group(0)
    kind = found[1]
    if found.startswith("\\u{"):  # ECMAScript's code point escape
        code = int(found[3:-1], 16)
        return chr(code) if code <= 0x10FFFF else found
    if kind in "0123":  # a run of octal escapes: C's and Python's repr of bytes
        return _bytes_text(bytes(int(found[i + 1 : i + 4], 8) for i in range(0, len(found), 4)))
    if kind == "u":  # a run, so UTF-16 surrogate pairs join (``\\ud83d\\ude00``)
        units = bytes.fromhex(found.replace("\\u", ""))
        return units.decode("utf-16-be", errors="replace")
    if kind == "x":  # a run: Python's repr of bytes (UTF-8), or ``ascii()`` of a str
        return _bytes_text(bytes.fromhex(found.replace("\\x", "")))
    if kind == "U":
        code = int(found[2:], 16)
        return chr(code) if code <= 0x10FFFF else found
    return _SIMPLE_ESCAPES[kind]


def _blob_text(raw: bytes | None) -> str | None:
    """A decoded blob's text when it is text (printable UTF-8), else ``None``."""
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text and all(c.isprintable() or c.isspace() for c in text) else None


def _b64(blob: str) -> bytes | None:
    body = blob.rstrip("=")
    if len(body) % 4 == 1:
        return None
    padded = body + "=" * (-len(body) % 4)
    try:
        if "-" in body or "_" in body:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _is_blob(body: str) -> bool:
    """Whether a run of base64/hex characters may be an encoding of text: hex, or mixed
    case that is not a word (base64 of text has both cases; ``summarize_1``,
    ``Internationalization`` and ``ORDER_ID`` are words)."""
    if _HEX.fullmatch(body):
        return True
    return not (body.islower() or body.isupper() or body[1:].islower())


def _unblobbed(match: re.Match[str]) -> str:
    blob = match.group(0)
    body = blob.rstrip("=")
    if not _is_blob(body):
        return blob
    # Ids and digests are hex: not worth a base64 reading too.
    raw = bytes.fromhex(body) if _HEX.fullmatch(body) else _b64(blob)
    found = _blob_text(raw)
    return blob if found is None else found


def _maybe_encoded(text: str) -> bool:
    if not text.isascii() or "\\" in text or "%" in text or "&" in text or "+" in text:
        return True
    if "=" in text and _QUOTED_PRINTABLE.search(text) is not None:
        return True
    if not text.isprintable() and _CONTROLS.search(text) is not None:
        return True
    return any(_is_blob(m.group(0).rstrip("=")) for m in _BLOB.finditer(text))


def _decoded_once(text: str) -> str:
    if "\\" in text:
        text = _ESCAPES.sub(_unescaped, text)
    text = _BLOB.sub(_unblobbed, text)  # before ``+`` is read as a space: base64 uses it
    if "%" in text:
        text = _PERCENT_U.sub(lambda m: chr(int(m.group(1), 16)), text)
        text = _PERCENT.sub(lambda m: _bytes_text(bytes.fromhex(m.group(0).replace("%", ""))), text)
    if "=" in text:
        text = _QUOTED_PRINTABLE.sub(
            lambda m: _bytes_text(bytes.fromhex(m.group(0).replace("=", ""))),
            text.replace("=\r\n", "").replace("=\n", ""),
        )
    if "+" in text:
        text = text.replace("+", " ")
    if "&" in text:
        text = html.unescape(text)
    text = _CONTROLS.sub("", text)
    if not text.isascii():
        # Fullwidth digits, ligatures, decomposed accents; then format characters (zero-width
        # spaces and joiners, soft hyphens) that split a value without showing.
        text = unicodedata.normalize("NFKC", text)
        text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return text


def decoded(text: str) -> str:
    """``text`` with what may hide data from a policy decoded (see the module's doc); ``text``
    itself when it holds nothing encoded."""
    if not _maybe_encoded(text):
        return text
    for _ in range(_DECODE_ROUNDS):
        again = _decoded_once(text)
        if again == text:
            break
        text = again
    return text


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
