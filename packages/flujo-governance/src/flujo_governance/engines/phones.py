"""Whether a phone-shaped candidate is a phone number: libphonenumber decides, not hand rules.

The regex engine finds *candidates* (runs of digits with the separators phone numbers use);
this module validates them with :mod:`phonenumbers` (Google's libphonenumber metadata):

* ``+CC ...``, ``00CC ...`` and ``011 CC ...`` are international: valid for their country.
* Anything else is a national number, tried in :data:`NATIONAL_REGIONS` — only the regions
  whose possible lengths fit the digits, so most candidates cost one or two checks.

Who decides what: a candidate libphonenumber calls *valid* is a phone. One it only calls
*possible* (the right length, an unassigned range) is a phone when a keyword (*phone, call,
tel...*) comes just before it, or when it is written in the North American layout
``(NXX) NXX-XXXX`` / ``NXX-NXX-XXXX``. A number written without any separator (``0612345678``)
needs a trunk prefix ``0`` or a keyword, so bare ids, timestamps and national ids that happen
to be valid somewhere are left alone.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneMetadata

__all__ = ["NATIONAL_REGIONS", "PHONE_CONTEXT", "is_phone", "national_id"]

NATIONAL_REGIONS = (
    "US", "GB", "DE", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "IN", "BR", "CN", "JP", "AU",
    "IL", "MX",
)  # fmt: skip
"""Regions whose national formats (no ``+CC``) are recognised: Presidio's phone regions (US,
CA through the NANP, GB, DE, IL, IN, BR), the large western European ones and the most
populous markets with their own formats (CN, JP, AU, MX). More regions would catch more
national formats and also make more unrelated digit runs valid somewhere."""

PHONE_CONTEXT = re.compile(
    r"(?i)(?:phone|tel|telephone|mobile|cell|cellphone|fax|call|text|sms|whatsapp|dial|"
    r"contact|reach|móvil|teléfono|telefon|tél|portable|handy|ruf)\b[^\d\n]{0,16}$"
)
"""A keyword just before a number that says it is a phone number."""

_NUMBER_CONTEXT = re.compile(r"(?i)(?:number|no\.|nr\.?|numéro|número|nummer|#)\s*(?:is|:|=)?\s*$")
"""A weaker keyword: "my number is ...": enough for a valid number written without separators,
not for a national id."""

_WRITTEN_WITHOUT_PREFIX = {"US": None, "CN": "MOBILE", "IN": "MOBILE"}
"""Regions whose numbers are commonly written without their trunk prefix (all NANP numbers;
Chinese and Indian mobile numbers). Elsewhere a national number starts with the prefix."""

_NATIONAL_IDS: dict[int, tuple[tuple[str, tuple[tuple[int, ...], ...]], ...]] = {
    9: (
        ("ca.sin", ((3, 3, 3),)),
        ("au.tfn", ((3, 3, 3),)),
        ("nl.bsn", ((4, 2, 3),)),
        ("us.itin", ((3, 2, 4),)),
    ),
    11: (
        ("pl.pesel", ()),
        ("de.idnr", ((2, 3, 3, 3),)),
        ("au.abn", ((2, 3, 3, 3),)),
        ("br.cpf", ((3, 3, 3, 2),)),
    ),
    12: (("in_.aadhaar", ((4, 4, 4),)),),
    13: (("kr.rrn", ((6, 7),)), ("za.idnr", ())),
}
"""python-stdnum modules of national ids, by length, with the layouts they are written in
besides a bare run of digits: phone-shaped digits in one of those layouts that pass the id's
check are not taken for a phone unless a phone keyword says so."""


_TYPES = (
    "fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost", "personal_number",
    "voip", "pager", "uan", "voicemail",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Region:
    code: str
    country_code: int
    prefix: str | None
    lengths: frozenset[int]
    valid: re.Pattern[str]
    """libphonenumber's patterns of every number type of the region, in one expression:
    a national number is valid when it matches one (what ``is_valid_number_for_region``
    checks one type at a time, several times slower)."""
    mobile: re.Pattern[str]


def _pattern(patterns: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns) or "(?!)")


@functools.cache
def _region(region: str) -> _Region | None:
    """What validating a number of ``region`` needs from libphonenumber's metadata (read once
    per region: metadata, not inputs, is cached)."""
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.general_desc is None:
        return None
    descs = {name: getattr(metadata, name) for name in _TYPES}
    patterns = {
        name: desc.national_number_pattern
        for name, desc in descs.items()
        if desc is not None and desc.national_number_pattern
    }
    return _Region(
        region,
        phonenumbers.country_code_for_region(region),
        metadata.national_prefix,
        frozenset(metadata.general_desc.possible_length or ()),
        _pattern(list(patterns.values())),
        _pattern([p for name, p in patterns.items() if name == "mobile"]),
    )


_PLAN = tuple(r for r in map(_region, NATIONAL_REGIONS) if r is not None)
_NANP = re.compile(r"(?:\+?1[ .-]?)?(?:\([2-9]\d\d\) ?|[2-9]\d\d[ .-])[2-9]\d\d[ .-]\d{4}")
_DIGITS = re.compile(r"\d+")
# 078-05-1120 and 91170-1234: the layouts of an SSN / ITIN and of a US ZIP+4 code.
_NOT_PHONE_LAYOUT = re.compile(r"\d{3}([-. ])\d{2}\1\d{4}|\d{5}-\d{4}")
_NANP_LAYOUT = re.compile(r"(?:1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-]?)\d{3}[ .-]?\d{4}")


def _valid_national(text: str, digits: str) -> bool | None:
    """True when ``digits`` is a valid number of one of :data:`NATIONAL_REGIONS`; None when
    it is only possible (a possible length) somewhere; False otherwise.

    The national number is the digits without the region's trunk prefix, matched against the
    region's metadata directly: parsing costs several times more, and the regex engine does
    this for every candidate."""
    possible: bool | None = False
    for region in _PLAN:
        nsn = digits
        without = _WRITTEN_WITHOUT_PREFIX.get(region.code, "")
        if region.prefix and digits.startswith(region.prefix):
            nsn = digits[len(region.prefix) :]
        elif region.prefix and without == "":
            continue  # national numbers of this region start with its trunk prefix
        if len(nsn) not in region.lengths:
            continue
        possible = None
        if region.valid.fullmatch(nsn) is None:
            continue
        if region.code == "US" and not _NANP_LAYOUT.fullmatch(text):
            continue  # 2024-000123 is a valid number of Washington DC, not its layout
        if without == "MOBILE" and nsn == digits and region.mobile.fullmatch(nsn) is None:
            continue
        return True
    return possible


_TRUNK_IN_PARENS = re.compile(r"\(0\)")


def _international(text: str, digits: str) -> bool | None:
    """True when ``text`` (``+CC ...``, ``00CC ...``, ``011 CC ...``) is a valid number of its
    country; None when only possible; False otherwise. Matched against the metadata of the
    country code's regions, like :func:`_valid_national` (``+44 (0)20 ...``: the trunk prefix
    in parentheses is dropped)."""
    compact = text.lstrip("(")
    if compact.startswith("+"):
        rest = digits
    elif compact.startswith("00"):  # the international prefix of most of the world
        rest = digits[2:]
    else:  # 011, from North America
        rest = digits[3:]
    if "(0)" in text:
        rest = "".join(_DIGITS.findall(_TRUNK_IN_PARENS.sub("", text)))[len(digits) - len(rest) :]
    possible: bool | None = False
    for size in (1, 2, 3):
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(rest[:size] or 0))
        if not regions:
            continue
        nsn = rest[size:]
        for code in regions:
            region = _region(code)
            if region is None or len(nsn) not in region.lengths:
                continue
            possible = None
            if region.valid.fullmatch(nsn) is not None:
                return True
        return possible  # country codes are prefix-free: no other size can match
    return False


_ID_CHECKS: dict[int, tuple[tuple[Callable[[str], bool], tuple[tuple[int, ...], ...]], ...]] = {
    length: tuple(
        (importlib.import_module(f"stdnum.{name}").is_valid, layouts) for name, layouts in ids
    )
    for length, ids in _NATIONAL_IDS.items()
}


def national_id(digits: str, sizes: tuple[int, ...]) -> bool:
    """Whether ``digits``, written in runs of ``sizes``, is a national id (python-stdnum)."""
    for is_valid, layouts in _ID_CHECKS.get(len(digits), ()):
        if (len(sizes) == 1 or sizes in layouts) and is_valid(digits):
            return True
    return False


def is_phone(text: str, digits: str, sizes: tuple[int, ...], before: str) -> bool:
    """Whether ``text`` (a candidate with ``digits``, written in runs of ``sizes`` digits)
    is a phone number; ``before`` is the text just before it, for keywords."""
    groups = len(sizes)
    keyword = PHONE_CONTEXT.search(before) is not None
    compact = text.lstrip("(")
    if compact.startswith(("+", "00", "011")):
        valid = _international(text, digits)
        if valid or (valid is None and (keyword or groups >= 2)):
            return True
        if compact.startswith("+"):
            return False
        # 00 / 011 that does not start a valid international number: a national one (011 is
        # Buenos Aires' area code, 00 starts nothing valid).
    if _NOT_PHONE_LAYOUT.fullmatch(text):
        return False  # never the layout of a phone number
    valid = _valid_national(text, digits)
    if not valid and groups > 1 and sizes[0] <= 3 and all(size == 3 for size in sizes[1:]):
        return False  # thousands grouping: an amount (1 234 567), even after "call"
    if groups == 1 and not keyword:
        # A bare digit run: with a trunk prefix and 10 or more digits (0612345678), or after
        # "number"; otherwise an id, an amount or a timestamp.
        if valid is not True:
            return False
        if not ((digits[0] == "0" and len(digits) >= 10) or _NUMBER_CONTEXT.search(before)):
            return False
    elif not (valid or _NANP.fullmatch(text) or (valid is None and keyword)):
        return False
    return keyword or not national_id(digits, sizes)
