"""The ``deny_words`` governance policy."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from flujo.plugin import PolicyDecision, PolicyViolation

if TYPE_CHECKING:
    from flujo.plugin import PipelineContext


def _texts(value: Any) -> Iterator[str]:
    """Every string inside ``value``: itself, mapping keys and values, sequence items and the
    fields of pydantic models, recursively."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode("utf-8", errors="replace")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _texts(key)
            yield from _texts(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _texts(item)
    elif hasattr(value, "model_dump"):  # a pydantic model
        yield from _texts(value.model_dump())


class DenyWords:
    """Denies any input or tool call that contains one of ``words``.

    Matching is case-insensitive and on whole words: with ``words=["secret"]``, ``"A SECRET
    plan"`` is denied and ``"secretary"`` is allowed. A phrase such as ``"drop table"`` matches
    as a whole too. With no words, everything is allowed.
    """

    name = "deny_words"

    def __init__(self, words: Iterable[str]) -> None:
        self.words = tuple(dict.fromkeys(w.strip() for w in words if w.strip()))
        alternatives = "|".join(re.escape(w) for w in sorted(self.words, key=len, reverse=True))
        # (?<!\w)/(?!\w) instead of \b so words that start or end with punctuation still work.
        self._pattern = (
            re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE) if self.words else None
        )

    def find(self, value: Any) -> str | None:
        """The first denied word found in ``value`` (as written in the value), or ``None``."""
        if self._pattern is None:
            return None
        for text in _texts(value):
            match = self._pattern.search(text)
            if match is not None:
                return match.group(0)
        return None

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        """Deny the step's input if it contains a denied word; otherwise pass it on unchanged."""
        word = self.find(data)
        if word is not None:
            raise PolicyViolation(self.name, f"input contains {word.lower()!r}")
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        """Deny a tool call whose arguments contain a denied word."""
        word = self.find(args)
        if word is not None:
            raise PolicyViolation(
                self.name, f"arguments of {tool_name!r} contain {word.lower()!r}", where="tool_call"
            )
        return PolicyDecision.ALLOW

    def __repr__(self) -> str:
        return f"DenyWords({list(self.words)!r})"
