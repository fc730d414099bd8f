"""``flujo.plugin.decoded``: what a policy reads besides the text itself. (flujo-otel's
``test_otel_scrub_encodings.py`` checks every encoding against the standard library's
decoders; these are the core's own checks, runnable with only flujo-core installed.)"""

from __future__ import annotations

import base64
import hashlib

import pytest

from flujo.plugin import decoded

EMAIL = "jose.diaz@example.com"


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("to jose.diaz%40example.com", f"to {EMAIL}"),
        (base64.b64encode(EMAIL.encode()).decode(), EMAIL),
        ("jose.diaz&#64;example.com", EMAIL),
        ('log {"n": "Jos\\u00e9"}', 'log {"n": "José"}'),
        ("".join(chr(ord(d) + 0xFEE0) for d in "4111"), "4111"),
        ("q=4111+1111", "q=4111 1111"),
        ("Mail: jose.diaz=40example=2Ecom", f"Mail: {EMAIL}"),
    ],
)
def test_encodings_are_decoded(text: str, plain: str) -> None:
    assert decoded(text) == plain


@pytest.mark.parametrize(
    "text",
    [
        "budget +12.50, tel:+44 20, (+1) 415, C++",
        "max_tokens=4096 size=2048 user_id=847362",
        hashlib.sha256(b"x").hexdigest(),
        "Internationalization ORDER_ID summarize_1",
    ],
)
def test_plain_texts_are_returned_as_they_are(text: str) -> None:
    assert decoded(text) is text
