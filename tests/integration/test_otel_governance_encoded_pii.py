"""flujo-otel with flujo-governance's ``pii`` policy (the regex engine): a run whose steps
carry PII *encoded* (JSON escapes mid-text, percent-encoding, base64, HTML entities, in
outputs, step names, failures' messages and stack traces) exports none of it.

The values are public test data: ``info@presidio.site`` from Microsoft Presidio's e-mail
recognizer tests (presidio-analyzer/tests/test_email_recognizer.py), the Visa test card
4111 1111 1111 1111 that payment processors publish for testing. Encodings: RFC 8259
(JSON string escapes), RFC 3986 (percent-encoding), RFC 4648 (base64), HTML character
references (as listed by the OWASP XSS Filter Evasion Cheat Sheet).
"""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.parse
from pathlib import Path
from typing import Any

from flujo_otel.plugin import OtelPlugin
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flujo import Flujo, Pipeline, RunStatus, Step
from flujo.config import load_config
from flujo.plugins.manager import PluginManager
from flujo_governance.pii import PIIScrubbingPolicy

EMAIL = "info@presidio.site"
CARD = "4111 1111 1111 1111"
ENCODED = {
    "json mid-text": "prefix " + json.dumps({"e": EMAIL}).replace("@", "\\u0040"),
    "json in json": json.dumps({"inner": json.dumps({"e": EMAIL.replace("@", "\\u0040")})}),
    "percent": "https://x.test/?to=" + urllib.parse.quote(EMAIL, safe=""),
    "base64": "blob " + base64.b64encode(f"card {CARD}".encode()).decode(),
    "html": EMAIL.replace("@", "&#64;"),
}


class _Kept(InMemorySpanExporter):
    def shutdown(self) -> None:  # keep the spans after the runner closes
        pass


def encode(text: str) -> dict[str, str]:
    return ENCODED


def fail(value: Any) -> str:
    raise ValueError("no account for " + ENCODED["percent"] + " " + ENCODED["json mid-text"])


def _all_text(spans: tuple[ReadableSpan, ...]) -> str:
    parts: list[str] = []
    for span in spans:
        parts += [span.name, span.status.description or ""]
        parts += [str(v) for v in (span.attributes or {}).values()]
        for event in span.events:
            parts += [event.name, *(str(v) for v in (event.attributes or {}).values())]
        for link in span.links:
            parts += [str(v) for v in (link.attributes or {}).values()]
        parts += [str(v) for v in span.resource.attributes.values()]
    return "\n".join(parts)


def _plain(text: str) -> str:
    """What a reader of the trace decodes (independently of the exporter's decoder)."""
    text = urllib.parse.unquote(text).replace("&#64;", "@").replace("\\\\", "\\")
    text = text.replace("\\u0040", "@")
    for word in text.split():
        with contextlib.suppress(ValueError):
            text += " " + base64.b64decode(word, validate=True).decode()
    return text


async def test_encoded_pii_in_a_traced_run_is_not_exported(tmp_path: Path) -> None:
    exporter = _Kept()
    path = tmp_path / "flujo.toml"
    path.write_text('[state]\nuri = "sqlite:///.flujo/flujo.db"\n[otel]\nenabled = true\n')
    manager = PluginManager(strict=True)
    manager.register(OtelPlugin(exporter=lambda resolved: exporter, environ={}), "flujo-otel")
    config = load_config(path, plugin_manager=manager, environ={})
    pipeline = Pipeline(
        [
            Step.from_callable(encode, name="encode"),
            Step.from_callable(fail, name="lookup " + ENCODED["percent"]),
        ],
        name="encoded",
    )
    async with Flujo(pipeline, config=config, policies=[PIIScrubbingPolicy()]) as runner:
        result = await runner.run_async("start")
    assert result.status is RunStatus.FAILED
    spans = exporter.get_finished_spans()
    assert {s.name for s in spans} >= {"run encoded", "step encode"}
    text = _all_text(spans)
    assert "<EMAIL>" in text
    assert "<CREDIT_CARD>" in text
    assert EMAIL not in _plain(text)
    assert CARD not in _plain(text)
    # The test's decoding finds them when nothing is scrubbed.
    assert EMAIL in _plain("\n".join(ENCODED.values()))
    assert CARD in _plain("\n".join(ENCODED.values()))
