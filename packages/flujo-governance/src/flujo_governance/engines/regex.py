"""The default PII engine: regular expressions with validation, no downloads.

Every detector first finds *candidates* with a regular expression, then validates them with
a well-kept library where one exists: libphonenumber (:mod:`phonenumbers`) for phone numbers,
python-stdnum for IBANs (mod-97 and each country's account format) and SSNs (ranges and the numbers
never issued), :mod:`ipaddress` for IP addresses; Luhn and issuer ranges for cards. So dates,
times, prices, versions, order numbers, MAC addresses, national ids and numbers that fail
their checksum are left alone.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from stdnum import iban as stdnum_iban
from stdnum.exceptions import ValidationError
from stdnum.us import ssn as stdnum_ssn

from flujo_governance.engines.base import ENTITIES, CustomPattern, Finding, resolve_entities
from flujo_governance.engines.phones import is_phone, national_id

__all__ = ["RegexEngine", "iban_valid", "luhn_valid"]

# Higher wins when two findings overlap (then the longer one, then the earlier one).
_PRIORITY = {
    "PRIVATE_KEY": 100,
    "JWT": 90,
    "AWS_KEY": 85,
    "GITHUB_TOKEN": 85,
    "SLACK_TOKEN": 85,
    "API_KEY": 85,
    "SECRET": 80,
    "EMAIL": 70,
    "IBAN": 60,
    "CREDIT_CARD": 55,
    "US_SSN": 50,
    "IP_ADDRESS": 45,
    "PHONE": 40,
}
_CUSTOM_PRIORITY = 95


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` (only 0-9) passes the Luhn checksum."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_valid(candidate: str) -> bool:
    """True when ``candidate`` (spaces or dashes allowed, any case) is an IBAN: the right
    length for its country, mod-97 check 1 (checked here first: cheap), then python-stdnum's
    check of the country's account format."""
    iban = re.sub(r"[ .\-\u00a0\u202f]", "", candidate).upper()
    expected = _IBAN_LENGTHS.get(iban[:2])
    if expected is None or len(iban) != expected or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    if number % 97 != 1:
        return False
    try:
        # Not check_country: the national checks of some countries look the bank up in
        # registries that age (BE68 5390 0754 7034, the IBAN registry's own sample, fails).
        stdnum_iban.validate(iban, check_country=False)
    except ValidationError:
        return False
    return True


def _card_prefix_ok(d: str) -> bool:
    """Issuer ranges of the major networks (Visa, Mastercard, Amex, Discover, Diners, JCB,
    UnionPay, Maestro, Mir, UATP): long numbers that merely pass Luhn (timestamps, ids) do
    not."""
    if d[0] in "3456":  # Amex, Diners, JCB; Visa; Mastercard, Maestro; Discover, UnionPay
        return True
    if d[0] == "1" and len(d) == 15:  # UATP (airline cards), JCB 1800
        return True
    four = int(d[:4])
    return (
        d[:4] in ("1800", "2131", "0604")  # JCB (15 digits), Maestro UK
        or 2221 <= four <= 2720  # Mastercard 2-series
        or 2200 <= four <= 2204  # Mir
    )


# python-stdnum rejects the numbers printed on sample cards and in advertisements; tens of
# thousands of people then used them as their own, so they are redacted all the same.
_PUBLISHED_SSNS = frozenset({"078051120", "219099999", "457555462"})


def _ssn_valid(area: str, group: str, serial: str) -> bool:
    """python-stdnum's rules: area not 000, 666 or 9xx (ITINs), group not 00, serial not
    0000."""
    number = area + group + serial
    return stdnum_ssn.is_valid(number) or number in _PUBLISHED_SSNS


@dataclass(frozen=True, slots=True)
class _Detector:
    kind: str
    pattern: re.Pattern[str]
    group: int | str = 0
    validate: Callable[[re.Match[str]], bool] | None = None
    finder: Callable[[str], Iterator[Finding]] | None = None
    """Finds (and validates) matches itself, instead of ``pattern``/``validate``."""
    needs: tuple[str, ...] = ()
    """Cheap pre-check: run the pattern only when one of these substrings is in the text."""
    needs_lower: tuple[str, ...] = ()
    """The same, against the lower-cased text (for case-insensitive patterns)."""


_DIGIT_RUN = re.compile(r"\d")
_NEVER = re.compile(r"(?!)")  # the pattern of detectors that use a finder

# Speed: a pattern that starts with a lookbehind is tried at every position of the text. The
# patterns below start with a character class instead (which the regex engine can skip to)
# and check the character before the match with a two-character lookbehind right after it:
# ``\d(?<![\w-]\d)`` is "a digit not preceded by a word character or a dash".

# --------------------------------------------------------------------------- e-mail
_EMAIL_LOCAL = re.compile(r"[\w.%+'-]*\w\Z")
# Labels of letters (any script), digits and dashes; the TLD is letters, or an IDN's punycode
# form (xn--p1ai).
_EMAIL_DOMAIN = re.compile(
    r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+(?:[^\W\d_]{2,63}|[Xx][Nn]--[A-Za-z0-9-]{1,59})"
    r"(?![\w-])"
)
# The "@", also percent-encoded in a URL or a form (ana%40example.com), as an HTML character
# reference (ana&#64;example.com) or full-width (U+FF20).
_EMAIL_AT = re.compile("@|%40|&#64;|&#[xX]40;|\uff20")
_ENCODED_SEPARATOR = re.compile(r"%(?:3[DdFfAaBb]|26|2[Ff]|2[Cc]|20)")  # = ? : ; & / , space


def _find_emails(text: str) -> Iterator[Finding]:
    """E-mail addresses, found from each ``@`` outwards (cheaper than scanning every word)."""
    resume = 0
    for at_match in _EMAIL_AT.finditer(text):
        at, after = at_match.span()
        if at < resume:
            continue
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        domain = _EMAIL_DOMAIN.match(text, after)
        if local is None or domain is None:
            continue
        start = local.start()
        # The local part must start at a boundary: not inside a longer run of its characters.
        while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "._%+-"):
            start -= 1
        # A query string around a percent-encoded address: the local part starts after the
        # last encoded separator (?user%3Dana%40example.com -> ana%40example.com).
        for sep in _ENCODED_SEPARATOR.finditer(text, start, at):
            start = sep.end()
        while start < at and text[start] in ".'%+-":  # punctuation before the address
            start += 1
        if start < at and (start == local.start() or at - start <= 64):
            yield Finding("EMAIL", start, domain.end())
            resume = domain.end()


# --------------------------------------------------------------------------- cards, IBAN, SSN
# Separators: space, no-break spaces (French typography uses U+202F), dash, dot.
_CARD = re.compile(r"\d(?<![\w.-]\d)(?:[ .\-\u00a0\u202f]?\d){12,18}(?![\w]|[.-]\d)")
# What comes just before the digits of an IBAN or another code: "GB82 WEST ", "hr12 001 ".
# (One character per repetition, so the pattern cannot backtrack badly.)
_CODE_BEFORE = re.compile(
    r"\b(?:[A-Z]{2}\d\d(?:[ -]?[A-Z0-9]){0,30}|[a-z]{2}\d\d(?:[ -]?[a-z0-9]){0,30})[ -]$"
)


_CARD_GROUP = re.compile(r"\d+")


def _card_digits_ok(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and _card_prefix_ok(digits) and luhn_valid(digits)


def _find_cards(text: str) -> Iterator[Finding]:
    """Card numbers. A candidate that fails as a whole is tried group by group, so a number
    next to its expiry or CVV (``4111 1111 1111 1111 123``) is still found."""
    for m in _CARD.finditer(text):
        candidate = m.group(0)
        if "  " in candidate or "--" in candidate or ".." in candidate:
            continue
        if "." in candidate and any(c in candidate for c in " -\u00a0\u202f"):
            continue  # dots are a layout of their own (4111.1111.1111.1111), never mixed
        if _CODE_BEFORE.search(text, max(0, m.start() - 40), m.start()):
            continue  # the digits of an IBAN-like code
        groups = [
            (g.start() + m.start(), g.end() + m.start()) for g in _CARD_GROUP.finditer(candidate)
        ]
        if _card_digits_ok("".join(_CARD_GROUP.findall(candidate))):
            yield Finding("CREDIT_CARD", m.start(), m.end())
            continue
        if len(groups) < 2:
            continue
        found = None
        for i in range(len(groups)):
            for j in range(len(groups), i + 1, -1):
                digits = "".join(text[a:b] for a, b in groups[i:j])
                if _card_digits_ok(digits):
                    found = (groups[i][0], groups[j - 1][1])
                    break
            if found is not None:
                break
        if found is not None:
            yield Finding("CREDIT_CARD", *found)


# Anchored on the check digits (digits are rarer than letters, so fewer places to try): two
# letters of any case before them, at a word boundary.
_IBAN = re.compile(
    r"\d(?:(?<=(?<!\w)[A-Za-z]{2}\d)|(?<=(?<!\w)[A-Za-z]{2} \d))\d"
    r"(?:[ .\-\u00a0\u202f]?[A-Za-z0-9]){11,30}"
)  # also with a space after the country code (NO 05 1503 0383 041) and dots as separators


def _find_ibans(text: str) -> Iterator[Finding]:
    """IBANs, printed compact or in groups, in any case: the candidate is cut to its
    country's length before the checks, so text after it does not hide it."""
    for m in _IBAN.finditer(text):
        begin = m.start() - 2 if text[m.start() - 1] != " " else m.start() - 3
        expected = _IBAN_LENGTHS.get(text[begin : begin + 2].upper())
        if expected is None:
            continue
        count, end = 0, begin
        for i in range(begin, m.end()):
            if text[i] not in " .-\u00a0\u202f":
                count += 1
                if count == expected:
                    end = i + 1
                    break
        if count != expected or (end < len(text) and text[end].isalnum()):
            continue
        if iban_valid(text[begin:end]):
            yield Finding("IBAN", begin, end)


# One separator throughout: 078-05-1123, 078 05 1123, 078.05.1123 (never 693-09.4444).
_SSN = re.compile(r"(\d(?<![\w.-]\d)\d{2})([-. ])(\d{2})\2(\d{4})(?![\w]|[.-]\d)")
# After "SSN" / "social security number" (a few characters between: "SSN: ", '"ssn": "',
# "Social Security Number (SSN): "), also without separators: 078051123.
_SSN_CONTEXT = re.compile(
    r"(?i)\b(?:ssn|ss#|social\s+security)(?![a-z])[^\d\n]{0,24}?"
    r"(?P<v>(\d{3})[-. ]?(\d{2})[-. ]?(\d{4}))(?![\w]|[.-]\d)"
)


def _ssn_ok(m: re.Match[str]) -> bool:
    return _ssn_valid(m.group(1), m.group(3), m.group(4))


def _ssn_ctx_ok(m: re.Match[str]) -> bool:
    return _ssn_valid(m.group(2), m.group(3), m.group(4))


# --------------------------------------------------------------------------- IP addresses
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(
    rf"\d(?<![\w.]\d)\d{{0,2}}\.(?:{_OCTET}\.){{2}}{_OCTET}"
    r"(?:/(?:3[0-2]|[12]?\d)(?!\d))?(?![\w]|\.\d)"
)  # with its CIDR prefix length, when one follows: 10.0.0.0/8
_VERSION_CONTEXT = re.compile(r"(?i)(?:version|ver\.?|release|build|v)\s*[:=]?\s*$")


def _ipv4_ok(m: re.Match[str]) -> bool:
    first = m.group(0).split(".", 1)[0]
    if int(first) > 255 or (len(first) > 1 and first[0] == "0"):
        return False
    before = m.string[max(0, m.start() - 12) : m.start()]
    return _VERSION_CONTEXT.search(before) is None


_IPV6 = re.compile(
    r"[0-9A-Fa-f:](?<![\w:.][0-9A-Fa-f:])[0-9A-Fa-f:]*:[0-9A-Fa-f:]*(?:[\d.]*\d)?(?:%[\w.]+)?"
    r"(?![\w:])"
)
_PREFIX_LENGTH = re.compile(r"/(\d{1,3})(?!\w|\.\d)")


def _ipv6_valid(text: str) -> bool:
    """Whether ``text`` (with an optional ``%zone``) is an IPv6 address other than ``::``
    (the unspecified address: ``::`` in ``std::`` or a ``:::`` separator is not one)."""
    address = text.split("%", 1)[0]
    if not address.strip(":"):
        return False
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


def _with_prefix_length(text: str, end: int) -> int:
    """``end``, moved past a CIDR prefix length (``/64``) when one of 0-128 follows."""
    m = _PREFIX_LENGTH.match(text, end)
    if m is not None and int(m.group(1)) <= 128:
        return m.end()
    return end


def _find_ipv6(text: str) -> Iterator[Finding]:
    """IPv6 addresses (validated by :mod:`ipaddress`): compressed (``::1``), with a zone
    (``fe80::1%eth0``), a prefix length (``2001:db8::/32``) or a ``:port`` after them."""
    for m in _IPV6.finditer(text):
        candidate = m.group(0)
        if candidate.count(":") < 2:
            continue
        if _ipv6_valid(candidate) or (
            candidate.endswith("::") and text.startswith("/", m.end()) and candidate != "::"
        ):
            yield Finding("IP_ADDRESS", m.start(), _with_prefix_length(text, m.end()))
            continue
        head, _, port = candidate.rpartition(":")
        if port.isdigit() and _ipv6_valid(head):
            yield Finding("IP_ADDRESS", m.start(), m.start() + len(head))


# --------------------------------------------------------------------------- phones
_PHONE = re.compile(
    r"(?P<number>[+(\d](?<![\w+\-./#$€£][+(\d])(?<!\d:[+(\d])[\d().\-/ \u00a0\u202f]{5,40}\d)"
    r"(?:\s?(?:x|ext\.?|extension)\s?\d{1,6})?(?![\w]|[.\-/:]\d|[-:][A-Fa-f]|,\d)"
)
_GROUPS = re.compile(r"\d+")
_NEXT_NUMBER = re.compile(r"[ \u00a0\u202f](?=[0(])")
_SLASHED_PHONE = re.compile(r"0\d{2,5}/ ?\d[\d \-]{3,}\d")
_DATE = re.compile(r"\d{4}([-./ ])\d{1,2}\1\d{1,2}|\d{1,2}([-./ ])\d{1,2}\2\d{2}(?:\d{2})?")


def _phone_ok(text: str, before: str) -> bool:
    """Whether ``text`` (a candidate) is a phone number; ``before`` is the text before it.

    Shapes that are never phones are rejected here (dates, mixed separators, unbalanced
    parentheses, numbers glued to an IBAN or a code); :func:`phones.is_phone` (libphonenumber)
    decides the rest."""
    groups = _GROUPS.findall(text)
    digits = "".join(groups)
    n = len(digits)
    if n < 7 or n > 15 or text.count("(") != text.count(")") or _DATE.fullmatch(text):
        return False
    if "/" in text and _SLASHED_PHONE.fullmatch(text) is None:
        return False  # only the German area-code style: 030/1234567, 0151/123 45 67
    # Mixed separators inside the number (a date like 2024-01-15 12.30) are not phones,
    # except the usual "(area) 555-1234".
    if "." in text and ("-" in text or " " in text.replace("(", "").replace(")", "")):
        return False
    if _CODE_BEFORE.search(before):
        return False  # the digits of an IBAN, a card or an id: GB82 WEST 1234 5698 7654 32
    if len(groups[-1]) < 2:
        return False  # ISBNs, Medicare numbers and IP fragments end with one digit; phones not
    return is_phone(text, digits, tuple(len(g) for g in groups), before)


def _find_phones(text: str) -> Iterator[Finding]:
    """Phone numbers; a parenthesis that opens before the number and closes after it is left
    out: ``(415-555-2671)``."""
    for m in _PHONE.finditer(text):
        start, end = m.span("number")
        number = text[start:end]
        if number.startswith("(") and number.count("(") > number.count(")"):
            start += 1
            number = number[1:]
        number = number.rstrip(" \u00a0\u202f(")
        before = text[max(0, start - 30) : start]
        if _phone_ok(number, before):
            yield Finding("PHONE", start, m.end())
            continue
        # Two numbers in a row ("052 5552606 074-7111234"): cut where a space is followed by
        # what starts a national number (a trunk 0, an area code in parentheses), when both
        # parts are phone numbers by themselves (the longest first part first).
        split = False
        for gap in reversed(list(_NEXT_NUMBER.finditer(number))):
            second = start + gap.end()
            if _phone_ok(number[: gap.start()], before) and _phone_ok(
                text[second : start + len(number)], text[max(0, second - 30) : second]
            ):
                yield Finding("PHONE", start, start + gap.start())
                yield Finding("PHONE", second, m.end())
                split = True
                break
        if split:
            continue
        # The candidate may have taken digits before the number (a postcode, a house
        # number: "SD 20241 440-600-5124"): try it from each later group of digits that
        # starts a number written with other separators than the space before it. Not when
        # the whole is a national id (51 824 753 556, an ABN) or one layout throughout (the
        # groups of a card number that failed its checksum).
        if " " not in number or not any(c in number for c in "-.()/"):
            continue
        groups = _GROUPS.findall(number)
        if national_id("".join(groups), tuple(len(g) for g in groups)):
            continue
        for group in _GROUPS.finditer(text, start + 1, start + len(number)):
            begin = group.start()
            rest = text[begin : start + len(number)]
            if text[begin - 1] not in " \u00a0\u202f" or not any(c in rest for c in "-.()/"):
                continue
            if _phone_ok(text[begin : start + len(number)], text[max(0, begin - 30) : begin]):
                yield Finding("PHONE", begin, m.end())
                break


# --------------------------------------------------------------------------- secrets
_AWS_PREFIXES = (
    "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "AROA", "APKA", "ASCA"
)  # fmt: skip
_AWS = re.compile(
    r"(?<![A-Za-z0-9])(?:" + "|".join(_AWS_PREFIXES) + r")[A-Z0-9]{16}(?![A-Za-z0-9])"
)
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40,}")  # whole runs: scanned left to right


def _aws_secret_ok(m: re.Match[str]) -> bool:
    """Exactly 40 characters of base64 with upper and lower case letters and digits: the shape
    of an AWS secret access key (hex digests such as git commits are all lower case)."""
    v = m.group(0)
    if len(v) != 40 or m.string[m.end() : m.end() + 1] == "=":
        return False
    if m.start() > 0 and m.string[m.start() - 1] == "=":
        return False
    return (
        any(c.isupper() for c in v)
        and any(c.islower() for c in v)
        and any(c.isdigit() for c in v)
        and sum(c.isalpha() for c in v) >= 20
    )


_GITHUB = re.compile(
    r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"
    r"(?![A-Za-z0-9_])"
)
_API_KEY = re.compile(
    r"(?<![A-Za-z0-9_-])(?:sk-(?:proj-|svcacct-|admin-|ant-(?:api\d\d-|admin\d\d-)?)?"
    r"[A-Za-z0-9_-]{20,}|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|AIza[0-9A-Za-z_-]{35}|"
    r"glpat-[A-Za-z0-9_-]{20,}|npm_[A-Za-z0-9]{36}|hf_[A-Za-z0-9]{30,})(?![A-Za-z0-9_-])"
)


def _api_key_ok(m: re.Match[str]) -> bool:
    value = m.group(0)
    body = value.split("-", 1)[-1] if value.startswith("sk-") else value
    return any(c.isdigit() for c in body) and any(c.isalpha() for c in body)


_SLACK = re.compile(
    r"(?<![A-Za-z0-9-])(?:xox[abposr]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,}|"
    r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,})"
)
_JWT = re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_PEM = re.compile(
    r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:[\s\S]*?-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s\\]*)"
)
_SECRET_KEYS = (
    r"(?:password|passwd|passphrase|passcode|pwd|pass|secret|client[_-]?secret|"
    r"api[_-]?key|apikey|api[_-]?token|access[_-]?token|auth[_-]?token|refresh[_-]?token|"
    r"token|access[_-]?key|secret[_-]?key|private[_-]?key|credentials?|authorization)"
)
# The key may carry a prefix (DB_PASSWORD, aws.secret_key): only its last word is matched,
# preceded by a non-alphanumeric character, so "compass=" or "max_tokens=" never match.
_ASSIGNED_VALUE = (
    r"[\"']?\s*(?::=|=>|[:=])\s*"
    r"(?:\"(?P<dq>[^\"\n]{1,300})\"|'(?P<sq>[^'\n]{1,300})'|(?P<bare>[^\s,;&'\"<>(){}\[\]]{1,300}))"
)
_ASSIGNMENT = re.compile(
    r"(?i)(?<![A-Za-z0-9])" + _SECRET_KEYS + r"(?![A-Za-z0-9])" + _ASSIGNED_VALUE
)
# Faster: find the key case-sensitively in the lower-cased text, then match the value.
_SECRET_KEY_LOWER = re.compile(r"(?<![a-z0-9])" + _SECRET_KEYS + r"(?![a-z0-9])")
_VALUE_AFTER_KEY = re.compile(_ASSIGNED_VALUE)
_PROSE_PASSWORD = re.compile(
    r"(?i)\b(?:password|passcode|passphrase|pwd)\s+(?:is|was|will\s+be)\s*:?\s*"
    r"(?P<bare>[^\s,;'\"]{3,100}?)(?=[.!?]?(?:\s|$)|[,;'\"])"
)
_BEARER = re.compile(
    r"(?i)\b(?:bearer\s+(?P<bare>[A-Za-z0-9._~+/=-]{16,})|basic\s+(?P<sq>[A-Za-z0-9+/]{8,}={0,2}))"
)
_URL_PASSWORD = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s:/@]+:(?P<bare>[^\s@/]+)@")
_NOT_SECRET_VALUES = frozenset(
    {"true", "false", "null", "none", "nil", "yes", "no", "required", "optional", "string",
     "redacted", "hidden", "empty", "n/a", "na", "undefined"}
)  # fmt: skip


def _secret_value_ok(m: re.Match[str]) -> bool:
    key = _value_group(m)
    value = m.group(key)
    if not value:
        return False
    if m.string[m.end(key) : m.end(key) + 1] in ("{", "(", "["):
        return False  # ${VAR}, $(cmd): a reference, not a value
    v = value.strip()
    if not v or v.lower() in _NOT_SECRET_VALUES or set(v) <= set("*x•.-_ "):
        return False
    if v.startswith("<") or v.startswith("${") or v.startswith("{{") or v.startswith("%("):
        return False  # a placeholder or a template variable, not a value
    return not (v.isdigit() and len(v) < 4)


def _find_assignments(text: str) -> Iterator[Finding]:
    """The values of ``password=...``, ``"api_key": "..."``, ``DB_PASSWORD=...``."""
    lower = text.lower()
    if len(lower) != len(text):  # lower-casing changed offsets (rare Unicode): slow path
        for m in _ASSIGNMENT.finditer(text):
            if _secret_value_ok(m):
                yield Finding("SECRET", *m.span(_value_group(m)))
        return
    for key in _SECRET_KEY_LOWER.finditer(lower):
        value = _VALUE_AFTER_KEY.match(text, key.end())
        if value is not None and _secret_value_ok(value):
            yield Finding("SECRET", *value.span(_value_group(value)))


def _value_group(m: re.Match[str]) -> str:
    for key in ("dq", "sq", "bare"):
        if m.groupdict().get(key):
            return key
    return "bare"


_DETECTORS: tuple[_Detector, ...] = (
    _Detector("PRIVATE_KEY", _PEM, needs=("PRIVATE KEY",)),
    _Detector("JWT", _JWT, needs=("eyJ",)),
    _Detector("AWS_KEY", _AWS, needs=_AWS_PREFIXES),
    _Detector("AWS_KEY", _AWS_SECRET, validate=_aws_secret_ok),
    _Detector("GITHUB_TOKEN", _GITHUB, needs=("gh", "github_pat_")),
    _Detector(
        "API_KEY",
        _API_KEY,
        validate=_api_key_ok,
        needs=("sk-", "sk_", "rk_", "AIza", "glpat-", "npm_", "hf_"),
    ),
    _Detector("SLACK_TOKEN", _SLACK, needs=("xox", "xapp-", "hooks.slack.com")),
    _Detector(
        "SECRET",
        _ASSIGNMENT,
        finder=_find_assignments,
        needs_lower=("pass", "pwd", "secret", "key", "token", "credential", "authorization"),
    ),
    _Detector(
        "SECRET",
        _PROSE_PASSWORD,
        group="value",
        validate=_secret_value_ok,
        needs_lower=("pass", "pwd"),
    ),
    _Detector("SECRET", _BEARER, group="value", needs_lower=("bearer", "basic")),
    _Detector("SECRET", _URL_PASSWORD, group="value", needs=("://",)),
    _Detector("EMAIL", _NEVER, finder=_find_emails, needs=("@", "%40", "&#", "\uff20")),
    _Detector("IBAN", _IBAN, finder=_find_ibans),
    _Detector("CREDIT_CARD", _CARD, finder=_find_cards),
    _Detector("US_SSN", _SSN, validate=_ssn_ok),
    _Detector(
        "US_SSN",
        _SSN_CONTEXT,
        group="v",
        validate=_ssn_ctx_ok,
        needs_lower=("ssn", "ss#", "social"),
    ),
    _Detector("IP_ADDRESS", _IPV4, validate=_ipv4_ok, needs=(".",)),
    _Detector("IP_ADDRESS", _IPV6, finder=_find_ipv6, needs=(":",)),
    _Detector("PHONE", _PHONE, finder=_find_phones),
)
_NEEDS_DIGIT = frozenset({"IBAN", "CREDIT_CARD", "US_SSN", "IP_ADDRESS", "PHONE"})


def _span(m: re.Match[str], group: int | str) -> tuple[int, int]:
    if group == "value":
        return m.span(_value_group(m))
    return m.span(group)


def resolve_overlaps(
    findings: Iterable[Finding], priority: Callable[[Finding], int]
) -> list[Finding]:
    """Keep, among overlapping findings, the one with the highest priority (then the longest,
    then the first); return them ordered by position."""
    ranked = sorted(findings, key=lambda f: (-priority(f), -(f.end - f.start), f.start))
    kept: list[Finding] = []
    for f in ranked:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    kept.sort(key=lambda f: f.start)
    return kept


class RegexEngine:
    """Finds structured PII and secrets with validated regular expressions.

    :param entities: the entity kinds to look for (see :data:`ENTITIES`); ``None`` means all.
        Group names are accepted too: ``"secrets"`` (every secret kind).
    :param patterns: custom patterns, each reported under its own kind.
    """

    name = "regex"

    def __init__(
        self,
        entities: Iterable[str] | None = None,
        patterns: Sequence[CustomPattern] = (),
    ) -> None:
        self.entities = resolve_entities(entities)
        self.patterns = tuple(patterns)
        self._detectors = tuple(d for d in _DETECTORS if d.kind in self.entities)
        self._custom = tuple((p.name, re.compile(p.regex), p.group) for p in self.patterns)

    @property
    def kinds(self) -> frozenset[str]:
        """Every kind this engine can report (built-in entities and custom pattern names)."""
        return self.entities | {p.name for p in self.patterns}

    def _candidates(self, text: str) -> Iterator[Finding]:
        has_digit = _DIGIT_RUN.search(text) is not None
        lower: str | None = None
        for det in self._detectors:
            if det.needs and not any(n in text for n in det.needs):
                continue
            if det.needs_lower:
                if lower is None:
                    lower = text.lower()
                if not any(n in lower for n in det.needs_lower):
                    continue
            if det.kind in _NEEDS_DIGIT and not has_digit:
                continue
            if det.finder is not None:
                yield from det.finder(text)
                continue
            for m in det.pattern.finditer(text):
                if det.validate is not None and not det.validate(m):
                    continue
                start, end = _span(m, det.group)
                if end > start:
                    yield Finding(det.kind, start, end)
        for kind, pattern, group in self._custom:
            for m in pattern.finditer(text):
                start, end = m.span(group)
                if end > start:
                    yield Finding(kind, start, end)

    def find(self, text: str) -> list[Finding]:
        """The PII in ``text``, non-overlapping, ordered by position."""
        if len(text) < 3:  # the shortest PII is "::1"
            return []
        return resolve_overlaps(
            self._candidates(text), lambda f: _PRIORITY.get(f.kind, _CUSTOM_PRIORITY)
        )


assert set(_PRIORITY) == set(ENTITIES)
