"""A labelled benchmark built from public recognizer test material, split dev / held-out.

``pii_public_corpus.json`` holds cases ``{"text", "spans": [[label, start, end]], "source",
"split"}``. Labels are this package's kinds (``EMAIL``, ``PHONE``, ``CREDIT_CARD``, ``IBAN``,
``US_SSN``, ``IP_ADDRESS``: PII to find) or decoys that must not be reported as any of them
(``MAC_ADDRESS``, ``NATIONAL_ID``, ``INVALID_IBAN``, ``ISBN``, ``VERSION``, ``DATE``,
``NOT_PII``...). Each case names its source:

* Microsoft Presidio's recognizer unit tests, presidio-analyzer/tests (MIT License,
  Copyright (c) Presidio Contributors), commit 0aa9f8e4: the e-mail, credit card, phone,
  US SSN, IP and IBAN tests' texts and expected spans (cases Presidio itself scores as weak
  or ambiguous, such as a bare ``078051121`` or ``::``, are left out),
  data/context_sentences_tests.txt (its ITIN, passport, bank account and driver licence
  sentences as decoys), the MAC address tests
  and national id tests (CA SIN, AU TFN, PL PESEL, US ITIN, KR RRN, FI HETU, ZA ID, ES NIF,
  UK NINO, IT fiscal code, AU ABN/Medicare, DE tax and social security numbers, IN Aadhaar,
  SG FIN, IN PAN) as decoys, and every "no match" case as ``NOT_PII``.
* The IBAN registry's sample numbers as listed in python-stdnum's tests/test_iban.doctest
  (valid, and its broken ones as decoys), commit 006192e5; python-stdnum's docstring
  examples (SSN 536-90-4399, ISBN, EAN, SIN, PESEL decoys).
* libphonenumber's example numbers (Apache License 2.0) for 28 regions, fixed line and
  mobile, in international, E.164, national and national-without-separators layouts, as
  shipped in the ``phonenumbers`` package.
* The IPv6 examples of RFC 4291 sections 2.2-2.3, RFC 5952 sections 4 and 6 and RFC 4007
  section 11 (IETF).
* Cases written for this package for the classes of issue #15 (percent-encoded and IDN
  e-mails, dotted and UATP cards, SSNs with dots or after "SSN", lower-case IBANs, CIDR
  prefixes), with values from the sources above.

The split is a stable hash of the text: a third of the cases are held out; tune on ``dev``
only. ``benchmarks/pii.py`` prints both splits for the regex and presidio engines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS")

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parent / "pii_public_corpus.json").read_text(encoding="utf-8")
)


def split(name: str) -> list[dict[str, Any]]:
    """The cases of ``"dev"`` or ``"heldout"``."""
    return [c for c in CASES if c["split"] == name]


@dataclass
class KindScore:
    """One kind's figures: gold spans found (value fully covered by findings of the kind),
    exact spans, findings on that kind's gold, on other labelled spans (cross-type false
    positives) and on unlabelled text."""

    gold: int = 0
    found: int = 0
    exact: int = 0
    reported: int = 0
    correct: int = 0
    cross: int = 0
    misses: list[str] = field(default_factory=list)
    cross_examples: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found / self.gold if self.gold else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.reported if self.reported else 1.0


Finder = Callable[[str], Iterable[tuple[str, int, int]]]


def evaluate(find: Finder, cases: list[dict[str, Any]]) -> dict[str, KindScore]:
    """Per-kind scores of ``find`` (text -> ``(kind, start, end)`` findings) on ``cases``."""
    scores = {kind: KindScore() for kind in KINDS}
    for case in cases:
        text = case["text"]
        findings = [f for f in find(text) if f[0] in scores]
        for label, start, end in case["spans"]:
            if label not in scores:
                continue
            score = scores[label]
            score.gold += 1
            covered = [0] * (end - start)
            for kind, s, e in findings:
                if kind == label:
                    for i in range(max(s, start), min(e, end)):
                        covered[i - start] = 1
            if all(covered):
                score.found += 1
            else:
                score.misses.append(text)
            if any(f == (label, start, end) for f in findings):
                score.exact += 1
        for kind, s, e in findings:
            score = scores[kind]
            score.reported += 1
            overlapping = [lab for lab, a, b in case["spans"] if s < b and a < e]
            if kind in overlapping:
                score.correct += 1
            elif overlapping:
                score.cross += 1
                score.cross_examples.append(f"{text[s:e]!r} in {text!r} ({overlapping[0]})")
    return scores
