"""What every PII engine shares: entity kinds, findings and the engine protocol."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from flujo import ConfigError

__all__ = [
    "ENTITIES",
    "ENTITY_GROUPS",
    "SECRET_KINDS",
    "CustomPattern",
    "EngineUnavailableError",
    "Finding",
    "PIIEngine",
    "resolve_entities",
]

SECRET_KINDS = (
    "AWS_KEY",
    "GITHUB_TOKEN",
    "API_KEY",
    "SLACK_TOKEN",
    "JWT",
    "PRIVATE_KEY",
    "SECRET",
)
"""Kinds of credentials: cloud keys, tokens, private keys and ``password=`` style values."""

ENTITIES = (
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "US_SSN",
    "IP_ADDRESS",
    *SECRET_KINDS,
)
"""Every entity kind the regex engine detects; placeholders are named after them."""

ENTITY_GROUPS = {"secrets": SECRET_KINDS, "all": ENTITIES}
"""Names that stand for several kinds in ``entities``."""


class EngineUnavailableError(ConfigError):
    """The configured PII engine cannot be loaded (missing extra, missing spaCy model...)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of PII: its kind and where it is in the text (``text[start:end]``)."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class CustomPattern:
    """A user-defined detector: ``regex`` matches are reported as kind ``name``.

    ``group`` is the regex group to replace (``0``, the whole match, by default), so a pattern
    can keep a label and redact only the value: ``regex = 'EMP-(\\d{6})'``, ``group = 1``.
    """

    name: str
    regex: str
    group: int = 0


@runtime_checkable
class PIIEngine(Protocol):
    """Finds PII in text. Engines are stateless and safe to share between runs."""

    name: str

    @property
    def kinds(self) -> frozenset[str]:
        """Every kind this engine may report."""
        ...

    def find(self, text: str) -> list[Finding]:
        """Non-overlapping findings in ``text``, ordered by position."""
        ...


def resolve_entities(
    entities: Iterable[str] | None, *, allow_other: bool = False
) -> frozenset[str]:
    """``entities`` with group names expanded and case normalized; ``None`` means all.

    :param allow_other: accept other upper-case names too (Presidio's ``PERSON``,
        ``LOCATION``... with the presidio engine).
    :raises flujo.ConfigError: for a name that is neither a kind nor a group.
    """
    if entities is None:
        return frozenset(ENTITIES)
    found: set[str] = set()
    for raw in entities:
        name = raw.strip()
        group = ENTITY_GROUPS.get(name.lower())
        if group is not None:
            found.update(group)
        elif name.upper() in ENTITIES:
            found.add(name.upper())
        elif allow_other and name.isupper() and name.replace("_", "").isalnum():
            found.add(name)
        else:
            known = ", ".join([*ENTITIES, *ENTITY_GROUPS])
            raise ConfigError(f"[governance.pii] entities: unknown entity {raw!r} (known: {known})")
    return frozenset(found)
