"""PII written another way (encoded) is found, refused and scrubbed like plain PII.

A policy that reads text as it is misses ``jose.diaz%40example.com``. Every text the ``pii``
policy sees is also read decoded (:func:`flujo.plugin.decoded`): when the decoded form holds
PII, the text is replaced by its decoded form, scrubbed. Checked through the real policy in a
real run: a tool call whose encoded arguments hold PII is refused, the scripted model's input
holds neither the value nor its encoding, and neither is in the SQLite file (WAL included).

The shapes are those of the OWASP Web Security Testing Guide's and the OWASP Filter Evasion
Cheat Sheet's encodings (URL percent-encoding, HTML character references, base64), Presidio's
recognizer tests (``presidio-analyzer/tests``: e-mail, credit card ``4111 1111 1111 1111``,
phone numbers), JSON's ``\\uXXXX`` escapes (RFC 8259 section 7) and Unicode's compatibility
forms (UAX #15, NFKC: fullwidth digits, U+FF10..U+FF19).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from pathlib import Path

import pytest
from gov_testkit import database_bytes, make_config

from flujo import (
    Flujo,
    Pipeline,
    PipelineContext,
    RunStatus,
    Step,
    ToolCallRefused,
    make_agent_async,
)
from flujo.testing.models import call_tool, scripted_model
from flujo_governance.engines.base import Finding
from flujo_governance.engines.regex import RegexEngine
from flujo_governance.pii import PIIScrubbingPolicy
from flujo_governance.scrubber import Scrubber, redact_placeholder
from flujo_governance.settings import PIISettings

EMAIL = "jose.diaz@example.com"
CARD = "4111111111111111"
NAME = "José Pérez"
PHONE = "+1 415 555 2671"


def fullwidth(text: str) -> str:
    """``text`` in fullwidth forms (U+FF01..U+FF5E), spaces kept."""
    return "".join(c if c == " " else chr(ord(c) + 0xFEE0) for c in text)


FULLWIDTH_CARD = fullwidth("4111 1111 1111 1111")
FULLWIDTH_PHONE = fullwidth(PHONE)

# (case, encoded text, raw values it hides, kinds it must be refused for)
CASES = [
    ("percent", "jose.diaz%40example.com", [EMAIL], "EMAIL"),
    (
        "base64",
        base64.b64encode(f"{EMAIL} {CARD}".encode()).decode(),
        [EMAIL, CARD],
        "EMAIL",
    ),
    ("json-escape", "the client Jos\\u00e9 P\\u00e9rez called", [NAME], "CLIENT_NAME"),
    ("html-entity", "jose.diaz&#64;example.com", [EMAIL], "EMAIL"),
    ("html-named", "jose.diaz&commat;example&period;com", [EMAIL], "EMAIL"),
    ("fullwidth-card", FULLWIDTH_CARD, [CARD, "4111 1111 1111 1111"], "CREDIT_CARD"),
    ("fullwidth-phone", FULLWIDTH_PHONE, [PHONE], "PHONE"),
]

PII_SETTINGS = """\
[governance]
policies = ["pii"]

[governance.pii]
mode = "{mode}"
inspect_tool_args = "refuse"

[[governance.pii.patterns]]
name = "CLIENT_NAME"
regex = "Jos[eé] P[eé]rez"
"""


def needles(encoded: str, raws: list[str]) -> list[bytes]:
    """What must not be anywhere: the raw values and the encoded text, as bytes and in the
    forms JSON writes them."""
    texts = [encoded, *raws]
    forms = {t for t in texts} | {json.dumps(t)[1:-1] for t in texts}
    forms |= {json.dumps(t, ensure_ascii=False)[1:-1] for t in texts}
    return [f.encode() for f in forms]


def policy() -> PIIScrubbingPolicy:
    return PIIScrubbingPolicy(
        PIISettings.model_validate(
            {"patterns": [{"name": "CLIENT_NAME", "regex": "Jos[eé] P[eé]rez"}]}
        )
    )


@pytest.mark.parametrize(("case", "encoded", "raws", "kind"), CASES, ids=[c[0] for c in CASES])
def test_policy_scrubs_and_refuses_encoded_pii(
    case: str, encoded: str, raws: list[str], kind: str
) -> None:
    pii = policy()
    ctx = PipelineContext()
    text = f"note: {encoded} (end)"
    scrubbed = pii.scrub(ctx, {"body": text})["body"]
    for needle in needles(encoded, raws):
        assert needle.decode() not in scrubbed, (case, scrubbed)
    assert f"<{kind}>" in scrubbed
    with pytest.raises(ToolCallRefused, match=kind):
        pii.inspect_tool_call(ctx, "send_mail", {"to": encoded})


@pytest.mark.parametrize(
    "text",
    [
        hashlib.sha256(b"x").hexdigest(),  # a digest: hex of bytes that are not text
        str(uuid.UUID(int=7)),
        base64.b64encode(bytes(range(0, 256, 7))).decode(),  # base64 of binary
        base64.b64encode(b"hello from the billing team").decode(),  # of text without PII
        "see https://example.com/search?q=refund%20status&lang=en",
        "C++ &amp; Rust, 50% off, caf\\u00e9 " + fullwidth("Tokyo"),
        "Internationalization ORDER_ID summarize_1 McDonaldsRefund",
    ],
)
def test_encodings_without_pii_come_back_unchanged(text: str) -> None:
    pii = policy()
    ctx = PipelineContext()
    assert pii.scrub(ctx, {"t": text}) == {"t": text}
    pii.inspect_tool_call(ctx, "t", {"t": text})  # not refused


@pytest.mark.parametrize("mode", ["redact", "pseudonymize"])
@pytest.mark.parametrize(("case", "encoded", "raws", "kind"), CASES, ids=[c[0] for c in CASES])
async def test_run_refuses_and_stores_nothing_encoded(
    tmp_path: Path, mode: str, case: str, encoded: str, raws: list[str], kind: str
) -> None:
    sent: list[str] = []

    def send_mail(to: str, body: str) -> str:
        """Send an e-mail."""
        sent.append(to)
        return "sent"

    config = make_config(tmp_path, PII_SETTINGS.format(mode=mode))
    model = scripted_model(call_tool("send_mail", to=encoded, body="hi"), "could not send")
    agent = make_agent_async(model, "You send mail.", tools=[send_mail])
    async with Flujo(Pipeline([Step("mail", agent)]), config=config) as runner:
        result = await runner.run_async(f"write to {encoded} about the refund")
        at_rest_open = database_bytes(tmp_path)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert sent == []
    refusal = model.requests[1].tool_returns["send_mail"]
    assert refusal.startswith("Tool call refused by policy 'pii'")
    assert kind in refusal
    first = (
        json.dumps([str(m) for m in model.requests[0].messages], ensure_ascii=False)
        + model.requests[0].user_prompt
    )
    at_rest = database_bytes(tmp_path)
    for needle in needles(encoded, raws):
        assert needle.decode() not in first, f"{case}: the model saw {needle!r}"
        assert needle not in at_rest_open, f"{case}: {needle!r} in the database file"
        assert needle not in at_rest, f"{case}: {needle!r} in the database file"


class CountingEngine(RegexEngine):
    """The regex engine, counting its scans."""

    scans = 0

    def find(self, text: str) -> list[Finding]:
        self.scans += 1
        return super().find(text)


def test_a_text_without_encodings_is_scanned_once() -> None:
    """Decoding costs a second scan only when the text holds an encoding: a plus sign, a
    ``key=4096``, a word that is no base64 blob are not encodings."""
    engine = CountingEngine()
    scrubber = Scrubber(engine)
    plain = "budget +12.50 or tel:+44, C++ max_tokens=4096 size=2048 Internationalization"
    assert scrubber.text(plain, redact_placeholder) == plain
    assert engine.scans == 1
    harmless = base64.b64encode(b"hello from the billing team").decode()
    assert scrubber.text(harmless, redact_placeholder) == harmless
    assert engine.scans == 3  # one more text, and its decoded form
