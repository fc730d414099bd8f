"""PII engines: ``regex`` (default, built in) and ``presidio`` (extra ``[presidio]``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from flujo_governance.engines.base import CustomPattern, EngineUnavailableError, PIIEngine

__all__ = ["load_engine"]


def load_engine(
    name: str,
    entities: Iterable[str] | None = None,
    patterns: Sequence[CustomPattern] = (),
    *,
    presidio_model: str | None = None,
    presidio_score_threshold: float = 0.5,
    presidio_entity_thresholds: Mapping[str, float] | None = None,
) -> PIIEngine:
    """The engine ``name`` (``"regex"`` or ``"presidio"``), ready to use.

    :raises EngineUnavailableError: the engine cannot load (for presidio: the extra is not
        installed, or the configured spaCy model is missing). There is no fallback to a
        weaker engine.
    """
    if name == "regex":
        from flujo_governance.engines.regex import RegexEngine

        return RegexEngine(entities, patterns)
    if name == "presidio":
        from flujo_governance.engines.presidio import PresidioEngine

        return PresidioEngine(
            entities,
            patterns,
            model=presidio_model,
            score_threshold=presidio_score_threshold,
            entity_thresholds=presidio_entity_thresholds,
        )
    raise EngineUnavailableError(f"[governance.pii] engine: unknown engine {name!r}")
