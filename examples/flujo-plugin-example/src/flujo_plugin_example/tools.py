"""The ``example.word_count`` tool (the model sees it as ``example__word_count``)."""

from __future__ import annotations


async def word_count(text: str) -> int:
    """Count the words in `text` (runs of characters between whitespace)."""
    return len(text.split())
