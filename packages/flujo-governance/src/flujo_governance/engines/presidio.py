"""The ``presidio`` PII engine (``pip install flujo-governance[presidio]``).

Presidio's analyzer runs over a spaCy pipeline. With no model configured it uses a *blank*
English pipeline (``spacy.blank("en")``): no download, Presidio's pattern recognizers only
(e-mail, phone, cards, IBAN, SSN, IP, ...). A configured spaCy model (an installed package such
as ``en_core_web_sm``) adds names and places. The analyzer is built once per process and
configuration; nothing is fetched from the network at run time (the public-suffix list that
Presidio's e-mail recognizer consults is read from the snapshot shipped with ``tldextract``).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flujo_governance.engines.base import (
    ENTITIES,
    CustomPattern,
    EngineUnavailableError,
    Finding,
    resolve_entities,
)
from flujo_governance.engines.regex import RegexEngine, resolve_overlaps

__all__ = ["DEFAULT_ENTITY_THRESHOLDS", "PRESIDIO_KINDS", "PresidioEngine"]

PRESIDIO_KINDS = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
}
"""Presidio entity names mapped to this package's kinds; other Presidio entities (PERSON,
LOCATION, URL, ...) are reported under their Presidio names."""

DEFAULT_ENTITY_THRESHOLDS = {"PHONE": 0.4, "US_SSN": 0.4}
"""Per-kind minimum scores under the engine's ``score_threshold``: Presidio's phone
recognizer scores every number it finds 0.4 (libphonenumber found it valid; Presidio keeps
higher scores for context words), and its SSN recognizer scores a bare nine-digit run 0.05
(any nine digits: left out), 0.4 once context words ("ssn", "social") back it — with a spaCy
model; the blank pipeline has no lemmas to match them. At 0.5 none of Presidio's phone
numbers would be redacted."""

_ANALYZERS: dict[str | None, Any] = {}
_LOCK = threading.Lock()


def _analyzer(model: str | None) -> Any:
    with _LOCK:
        found = _ANALYZERS.get(model)
        if found is not None:
            return found
        try:
            # Imported by name: the extra is optional and ships no type information.
            spacy = importlib.import_module("spacy")
            tldextract = importlib.import_module("tldextract")
            tld_module = importlib.import_module("tldextract.tldextract")
            presidio = importlib.import_module("presidio_analyzer")
            nlp_engines = importlib.import_module("presidio_analyzer.nlp_engine")
        except ImportError as exc:
            raise EngineUnavailableError(
                "[governance.pii] engine = 'presidio' needs the presidio extra: "
                f"pip install 'flujo-governance[presidio]' ({exc})"
            ) from exc
        # Never reach for the public suffix list online: use tldextract's bundled snapshot.
        offline = tldextract.TLDExtract(
            suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True
        )
        setattr(tld_module, "TLD_EXTRACTOR", offline)  # noqa: B010 - a module global
        try:
            nlp = spacy.load(model) if model else spacy.blank("en")
        except OSError as exc:
            raise EngineUnavailableError(
                f"[governance.pii] presidio_model {model!r} is not installed; install the spaCy "
                f"model package or leave presidio_model unset for a blank pipeline ({exc})"
            ) from exc

        engine = nlp_engines.SpacyNlpEngine(
            models=[{"lang_code": "en", "model_name": model or "blank"}]
        )
        engine.nlp = {"en": nlp}  # loaded above; SpacyNlpEngine.load() would download
        registry = presidio.RecognizerRegistry(supported_languages=["en"])
        quiet = logging.getLogger("presidio-analyzer")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # one warning per recognizer of another language
        try:
            registry.load_predefined_recognizers(nlp_engine=engine, languages=["en"])
        finally:
            quiet.setLevel(level)
        analyzer = presidio.AnalyzerEngine(
            nlp_engine=engine, registry=registry, supported_languages=["en"]
        )
        _ANALYZERS[model] = analyzer
        return analyzer


class PresidioEngine:
    """PII detection by Microsoft Presidio's analyzer (plus the configured custom patterns).

    :param entities: kinds to report (this package's names, see
        :data:`~flujo_governance.engines.base.ENTITIES`); ``None``: everything Presidio finds.
    :param score_threshold: the minimum score of a finding.
    :param entity_thresholds: minimum scores per kind (this package's names or Presidio's),
        over :data:`DEFAULT_ENTITY_THRESHOLDS`.
    :raises EngineUnavailableError: Presidio or the spaCy model is not installed.
    """

    name = "presidio"

    def __init__(
        self,
        entities: Iterable[str] | None = None,
        patterns: Sequence[CustomPattern] = (),
        *,
        model: str | None = None,
        score_threshold: float = 0.5,
        entity_thresholds: Mapping[str, float] | None = None,
    ) -> None:
        self._all = entities is None
        self.score_threshold = score_threshold
        thresholds = {**DEFAULT_ENTITY_THRESHOLDS, **(entity_thresholds or {})}
        self.entity_thresholds = {
            PRESIDIO_KINDS.get(k.upper(), k.upper()): v for k, v in thresholds.items()
        }
        self._floor = min([score_threshold, *self.entity_thresholds.values()])
        self._analyzer = _analyzer(model)
        if entities is None:
            supported = self._analyzer.get_supported_entities(language="en")
            self.entities = resolve_entities(None) | {
                PRESIDIO_KINDS.get(name, name) for name in supported
            }
        else:
            self.entities = resolve_entities(entities, allow_other=True)
        self._custom = RegexEngine(entities=[], patterns=patterns) if patterns else None

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds this engine reports."""
        custom = self._custom.kinds if self._custom is not None else frozenset()
        return self.entities | custom

    def find(self, text: str) -> list[Finding]:
        """Presidio's findings at or above their kind's threshold, non-overlapping."""
        if not text.strip():
            return []
        results = self._analyzer.analyze(text=text, language="en", score_threshold=self._floor)
        findings = []
        for r in results:
            kind = PRESIDIO_KINDS.get(r.entity_type, r.entity_type)
            if r.score < self.entity_thresholds.get(kind, self.score_threshold):
                continue
            if self._all or kind in self.entities:
                findings.append(Finding(kind, r.start, r.end))
        if self._custom is not None:
            findings.extend(self._custom.find(text))
        custom = self._custom.kinds if self._custom is not None else frozenset()

        def priority(f: Finding) -> int:
            # Custom patterns first, then this package's kinds (an e-mail beats the URL
            # Presidio also sees in its domain), then Presidio's other entities.
            return 3 if f.kind in custom else 2 if f.kind in ENTITIES else 1

        return resolve_overlaps(findings, priority)
