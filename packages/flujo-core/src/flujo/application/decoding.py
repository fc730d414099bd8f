"""Text with what may hide data from a policy decoded: :func:`decoded`.

A policy that reads text as it is misses data written another way: JSON escapes in the middle
of a text (``prefix {"n": "Jos\\u00e9"}``, a JSON text inside a JSON string), a ``repr`` of bytes
(``b'Jos\\xc3\\xa9'``), octal and ECMAScript escapes, a URL's query (``jose%40example.com``,
``%u0040``), quoted-printable mail text (``=40``), HTML entities (``&#64;``), base64 or hex blobs
of text, other Unicode forms (fullwidth digits, ligatures, zero-width characters, control
characters). :func:`decoded` undoes all of these, a few rounds deep (an encoding of an
encoding), and answers ``text`` itself when it holds none of them; a text without encodings
costs one scan of cheap checks. Blobs that decode to bytes that are not printable text are
left as they are.

Every sink-keeping policy uses it the same way: when ``decoded(text) != text``, it also looks
for data in the decoded form, and when that form held some, what leaves is the decoded form,
scrubbed (the original would carry the data encoded). flujo-otel's exporter and
flujo-governance's PII policy both do; plugins reach it as ``flujo.plugin.decoded``.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import unicodedata

__all__ = ["decoded"]

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
# Not followed by a digit: ``size=2048`` and ``max_tokens=4096`` are numbers, not ``=20``, ``=40``.
_QUOTED_PRINTABLE = re.compile(r"(?:=[0-9A-F]{2})+(?![0-9])")
# ``+`` is a space in a form-encoded value (``q=4111+1111``), where it has no real space
# beside it; a ``+`` after a space, ``:`` or ``(`` (``+49 30``, ``tel:+44``, ``(+1)``) or
# beside another ``+`` (``C++``) is just a plus, and such a text costs no second look.
_PLUS_SPACE = re.compile(r"(?<=[^\s+:(])\+(?=[^\s+])")
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


def _qp_escapes(match: re.Match[str]) -> bool:
    """Whether a run of ``=XX`` is quoted-printable: an encoder escapes ``=``, specials and
    non-ASCII (as UTF-8), never letters or digits (``max_tokens=512`` is not
    ``max_tokensQ2``, ``user_id=847362`` no Latin-1 ``\\x84``)."""
    raw = bytes.fromhex(match.group(0).replace("=", ""))
    if raw.isalnum():
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _unquoted_printable(match: re.Match[str]) -> str:
    if not _qp_escapes(match):
        return match.group(0)
    return _bytes_text(bytes.fromhex(match.group(0).replace("=", "")))


def _maybe_encoded(text: str) -> bool:
    if not text.isascii() or "\\" in text or "%" in text or "&" in text:
        return True
    if "+" in text and _PLUS_SPACE.search(text) is not None:
        return True
    if "=" in text and any(_qp_escapes(m) for m in _QUOTED_PRINTABLE.finditer(text)):
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
            _unquoted_printable, text.replace("=\r\n", "").replace("=\n", "")
        )
    if "+" in text:
        text = _PLUS_SPACE.sub(" ", text)
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
