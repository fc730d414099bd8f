"""Data that reaches a span *encoded* is scrubbed too: whatever encoding hides a value from a
policy reading text (JSON escapes in the middle of a text, JSON in a JSON string, Python
reprs, percent-encoding, HTML entities, base64, hex, other Unicode forms), in every part of a
span an exporter sees.

The encodings are the standard ones an attacker or an ordinary library produces: JSON string
escapes (RFC 8259 section 7, what ``json.dumps`` writes by default), percent-encoding of URLs
and forms (RFC 3986 section 2.1, ``application/x-www-form-urlencoded``), base64 and base64url
(RFC 4648 sections 4 and 5), hex (RFC 4648 section 8), HTML numeric character references (the
encodings listed by the OWASP XSS Filter Evasion Cheat Sheet), Python's ``repr``/``ascii`` of
bytes and text (what an exception's message holds), Unicode compatibility forms and format
characters (UAX #15 NFKC; U+200B ZERO WIDTH SPACE). The e-mail address shape follows the
valid cases of Microsoft Presidio's public recognizer tests
(presidio-analyzer/tests/test_email_recognizer.py); the card is the Visa test number published
by payment processors for test data.

The leak check below decodes every exported text with the standard library, independently of
the exporter's own decoder.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import html
import json
import quopri
import re
import unicodedata
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from flujo_otel.scrub import ScrubbingExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode
from otel_testkit import CARD, EMAIL, NAME, RAW, PiiPolicy, texts

from flujo.application.scrubbing import Scrubbing
from flujo.plugin import decoded

PAYLOAD = {"n": NAME, "email": EMAIL, "card": CARD}
BOTH = f"{NAME} {EMAIL}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


ENCODED: dict[str, Any] = {
    "json mid-text": "prefix " + json.dumps(PAYLOAD),
    "json escape of an ascii char": "to " + EMAIL.replace("@", "\\u0040").replace(".", "\\u002e"),
    "json in a json string": json.dumps({"inner": json.dumps(PAYLOAD)}),
    "json in a json string mid-text": "x " + json.dumps({"inner": json.dumps(PAYLOAD)}),
    "json three deep": json.dumps([json.dumps([json.dumps(PAYLOAD)])]),
    "percent": "https://x.test/cb?q=" + urllib.parse.quote(BOTH),
    "form encoded": urllib.parse.urlencode({"who": NAME, "card": CARD}),
    "percent twice": urllib.parse.quote(urllib.parse.quote(EMAIL, safe=""), safe=""),
    "base64": "blob " + _b64(BOTH),
    "base64url unpadded": base64.urlsafe_b64encode(f"{NAME}|{EMAIL}".encode()).decode().rstrip("="),
    "base64 of json": _b64(json.dumps(PAYLOAD)),
    "hex": "id " + BOTH.encode().hex(),
    "html decimal and hex entities": EMAIL.replace("@", "&#64;").replace("j", "&#x6a;"),
    "html named entity": EMAIL.replace("@", "&commat;"),
    "python ascii()": f"ValueError({NAME!a})",
    "python bytes repr": f"got {NAME.encode()!r} from {EMAIL.encode('utf-16-le')!r}",
    "decomposed accents": unicodedata.normalize("NFD", NAME),
    "fullwidth card": CARD.translate({ord(d): ord(d) - ord("0") + 0xFF10 for d in "0123456789"}),
    "zero-width split": EMAIL.replace("@", "\u200b@\u200b"),
    "octal escapes": "to " + "".join(f"\\{b:03o}" for b in EMAIL.encode()),
    "ecmascript code point escapes": EMAIL.replace("@", "\\u{40}").replace("j", "\\u{6a}"),
    "percent-u": "q=" + EMAIL.replace("@", "%u0040"),
    "quoted-printable": "Mail: " + EMAIL.replace("@", "=40").replace(".", "=2E") + "=\n",
    "array": ["ok " + json.dumps(NAME), urllib.parse.quote(EMAIL), _b64(CARD)],
}


def _decodings(text: str) -> Iterator[str]:
    """``text`` and what the standard library decodes it to, up to four layers deep (a
    decoding never makes a text longer, so this ends quickly)."""
    seen = {text}
    layer = [text]
    for _ in range(5):
        next_layer = []
        for current in layer:
            yield current
            for candidate in _decode_once(current):
                if candidate not in seen and len(candidate) <= len(current):
                    seen.add(candidate)
                    next_layer.append(candidate)
        layer = next_layer


def _decode_once(current: str) -> list[str]:
    candidates = [
        urllib.parse.unquote_plus(current),
        html.unescape(current),
        re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda m: chr(int(m.group(1), 16)), current),
        re.sub(r"%u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), current),
        unicodedata.normalize("NFKC", current).replace("\u200b", ""),
    ]
    if current.isascii():
        with contextlib.suppress(UnicodeError, ValueError):
            candidates.append(quopri.decodestring(current.encode()).decode("utf-8"))
        escaped = codecs.decode(current, "unicode_escape", errors="ignore")
        candidates.append(escaped)
        with contextlib.suppress(UnicodeError):
            candidates.append(escaped.encode("latin-1").decode("utf-8"))
    if "\x00" in current:
        with contextlib.suppress(UnicodeError):
            candidates.append(current.encode("latin-1").decode("utf-16-le"))
    for word in current.replace("|", " ").split():
        for raw in _blobs(word):
            with contextlib.suppress(UnicodeError):
                candidates.append(raw.decode("utf-8"))
    try:
        parsed = json.loads(current)
    except ValueError:
        parsed = None
    if parsed is not None:
        candidates.append(json.dumps(parsed, ensure_ascii=False))
        candidates.extend(str(v) for v in _leaves(parsed))
    return candidates


def _blobs(word: str) -> Iterator[bytes]:
    padded = word + "=" * (-len(word) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        with contextlib.suppress(ValueError):
            yield decode(padded)
    with contextlib.suppress(ValueError):
        yield bytes.fromhex(word)


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def decoded_leaks(spans: tuple[ReadableSpan, ...]) -> list[str]:
    """Where a raw value is found in an exported text or in any decoding of it."""
    found = []
    for where, text in texts(spans):
        for form in _decodings(text):
            hits = [raw for raw in RAW if raw in form or raw.replace(" ", "") in form]
            if hits:
                found.append(f"{where}: {text[:100]!r} holds {hits}")
                break
    return found


def _exported(attributes: dict[str, Any], **parts: Any) -> tuple[ReadableSpan, ...]:
    inner = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(parts.get("resource", {})))
    provider.add_span_processor(
        SimpleSpanProcessor(ScrubbingExporter(inner, Scrubbing([PiiPolicy()])))
    )
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("other") as other:
        other_ctx = other.get_span_context()
    span = tracer.start_span(
        parts.get("name", "s"),
        attributes=attributes,
        links=[Link(other_ctx, parts.get("link", {}))],
    )
    for name, attrs in parts.get("events", []):
        span.add_event(name, attrs)
    span.set_status(Status(StatusCode.ERROR, parts.get("status", "failed")))
    span.end()
    return inner.get_finished_spans()


def test_the_leak_check_sees_every_encoding_unscrubbed() -> None:
    """Without scrubbing, each encoded value is found by the test's own decoding (so the
    test below proves something)."""
    for label, value in ENCODED.items():
        inner = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(inner))
        provider.get_tracer("t").start_span("s", attributes={"v": value}).end()
        assert decoded_leaks(inner.get_finished_spans()), label


@pytest.mark.parametrize("label", list(ENCODED))
def test_an_encoded_attribute_is_scrubbed(label: str) -> None:
    spans = _exported({"v": ENCODED[label]})
    assert decoded_leaks(spans) == []
    exported = dict(spans[-1].attributes or {})["v"]
    flat = json.dumps(list(exported) if isinstance(exported, tuple) else exported)
    assert "<" in flat, exported  # scrubbed, not dropped


def test_encoded_data_in_every_part_of_a_span_is_scrubbed() -> None:
    """Span name, status, event names and attributes (an exception's message and stack
    trace), link attributes, resource attributes, array values."""
    values = list(ENCODED.values())
    strings = [v for v in values if isinstance(v, str)]
    stacktrace = "Traceback (most recent call last):\n" + "\n".join(
        f'  File "x.py", line {i}, in f\n    raise ValueError({v!r})' for i, v in enumerate(strings)
    )
    spans = _exported(
        {f"a{i}": v for i, v in enumerate(values)},
        name="lookup " + ENCODED["json mid-text"],
        status="no account for " + ENCODED["percent"],
        events=[
            (
                "exception",
                {
                    "exception.type": "ValueError",
                    "exception.message": ENCODED["python bytes repr"],
                    "exception.stacktrace": stacktrace,
                },
            ),
            ("saw " + ENCODED["base64"], {"all": strings}),
        ],
        link={"why": ENCODED["hex"], "many": strings},
        resource={"owner": ENCODED["html decimal and hex entities"], "b": ENCODED["base64"]},
    )
    assert decoded_leaks(spans) == []


def test_pydantic_ai_message_attributes_with_nested_encodings_are_scrubbed() -> None:
    """pydantic-ai's ``all_messages_events``/``gen_ai.*`` attributes: JSON arrays of messages
    whose parts hold JSON texts (tool arguments) with escapes, base64 binary content."""
    messages = [
        {"role": "user", "content": "prefix " + json.dumps(PAYLOAD)},
        {
            "role": "assistant",
            "tool_calls": [{"function": {"arguments": json.dumps({"q": json.dumps(PAYLOAD)})}}],
        },
        {"role": "user", "content": [{"kind": "binary", "data": _b64(BOTH)}]},
    ]
    spans = _exported(
        {
            "all_messages_events": json.dumps(messages),
            "gen_ai.input.messages": "messages: " + json.dumps(messages),
            "logfire.json_schema": json.dumps({"type": "object"}),
        }
    )
    assert decoded_leaks(spans) == []


def test_texts_without_encodings_are_exported_as_they_were() -> None:
    """Decoding is only for finding data: a text with nothing to scrub keeps its form, even
    when it holds escapes, percent signs, entities or base64 of harmless text. (A text that
    is JSON as a whole is re-serialized, as before: its data is the same.)"""
    harmless = {
        "mid": 'log {"msg": "caf\\u00e9"}',
        "url": "https://x.test/a%20b?c=d+e",
        "b64": _b64("hello world"),
        "html": "a &lt; b &amp; c",
        "phone-like plus": "+1 to the count",
        "id": "0123456789abcdef0123456789abcdef",
        "words": "pipeline_name summarize internationalization",
    }
    spans = _exported(harmless)
    assert dict(spans[-1].attributes or {}) == harmless


def test_decoding_is_bounded_and_total() -> None:
    """Any text decodes (never raises) in a bounded number of rounds."""
    nested = EMAIL
    for _ in range(10):
        nested = urllib.parse.quote(nested, safe="")
    assert "%25" in decoded(nested)  # ten layers: four are taken off, not all
    for hostile in ["\\u", "\\ud800", "\\x", "%", "%zz", "&#xffffffff;", "=" * 9, "\\U0011ffff"]:
        assert isinstance(decoded(hostile * 3), str)


def test_a_batch_with_encoded_data_exports_once_per_span() -> None:
    inner = InMemorySpanExporter()
    exporter = ScrubbingExporter(inner, Scrubbing([PiiPolicy()]))
    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    spans = []
    for value in ENCODED.values():
        span = tracer.start_span("s", attributes={"v": value, "same": ENCODED["base64"]})
        span.end()
        spans.append(span)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    out = inner.get_finished_spans()
    assert len(out) == len(ENCODED)
    assert decoded_leaks(out) == []


class _RefusesMarked(PiiPolicy):
    """Fails on one value (a scrubber that cannot handle it: too deep, too odd)."""

    def scrub(self, context: Any, value: Any) -> Any:
        if "unscrubbable" in json.dumps(value):
            raise RecursionError("value nested too deeply to scrub")
        return super().scrub(context, value)


def test_one_unscrubbable_span_drops_only_itself_not_the_batch() -> None:
    """A span whose values a policy cannot scrub is dropped (never exported raw); the other
    spans of its batch (other runs' spans, typically) are still exported. A JSON text nested
    deeper than the parser goes is scrubbed as text."""
    inner = InMemorySpanExporter()
    exporter = ScrubbingExporter(inner, Scrubbing([_RefusesMarked()]))
    tracer = TracerProvider().get_tracer("t")
    spans = []
    for attrs in (
        {"who": EMAIL},
        {"bad": "unscrubbable " + EMAIL},
        {"deep": "[" * 100_000 + json.dumps(EMAIL) + "]" * 100_000},
    ):
        span = tracer.start_span("s", attributes=attrs)
        span.end()
        spans.append(span)
    assert exporter.export(spans) is SpanExportResult.FAILURE  # something was dropped
    out = inner.get_finished_spans()
    assert [sorted(dict(s.attributes or {})) for s in out] == [["who"], ["deep"]]
    assert decoded_leaks(out[:1]) == []
    assert EMAIL not in str(dict(out[1].attributes or {})["deep"])
