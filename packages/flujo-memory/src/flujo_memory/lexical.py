"""The lexical half of hybrid search: BM25 as sparse vectors, and reciprocal rank fusion.

A memory's text becomes a sparse vector: one entry per distinct word (lower-cased ``\\w+``
tokens, a few English stop words dropped, a light plural/suffix folding), indexed by a 32-bit
hash of the word and valued by BM25's term-frequency saturation
``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / AVG_LEN))``. The inverse document frequency
is applied at query time by whoever holds the collection (Qdrant's ``IDF`` modifier, the
in-memory store's own counts), so the document weights never need rewriting as the
collection grows. ``AVG_LEN`` is a constant rather than the collection's true average
length for the same reason (Qdrant's own BM25 does the same).

Every store that supports hybrid search uses these functions, so ``search = "lexical"``
ranks alike on all of them: the same words, weights and IDF (pgvector keeps the weights by
word in an inverted-index table and computes the IDF in SQL: see its module).
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from flujo.domain.interfaces import ScoredMemory
from flujo_memory.errors import MemoryUserError


class LexicalUnsupportedError(MemoryUserError):
    """``[memory] search = "lexical"`` with a store that has no lexical index."""


LEXICAL_ID = "bm25:v1"
"""Recorded in a collection built with a lexical index; change it when tokens or weights do."""

SearchMode = Literal["hybrid", "dense", "lexical"]

K1 = 1.2
B = 0.75
AVG_LEN = 64.0
RRF_K = 10
"""Reciprocal rank fusion constant: score = sum of 1 / (RRF_K + rank). Cormack et al. (2009)
use 60; on the benchmark's tuning split (never its held-out one) 10 put the right memory in
the top 10 more often (0.728 against 0.700), by trusting each half's first ranks more."""
CANDIDATES = 100
"""How many results each half contributes before fusion (at least ``limit``)."""

_TOKEN = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "is"}
    | {"it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "will", "with"}
)


def _fold(word: str) -> str:
    """A light English suffix folding so "files"/"file" and "returns"/"return" meet."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """The indexed words of ``text``, in order."""
    return [_fold(w) for w in (m.lower() for m in _TOKEN.findall(text)) if w not in _STOP]


def term_id(token: str) -> int:
    """A stable 32-bit index for ``token`` (Qdrant's sparse indices are unsigned 32-bit)."""
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=4).digest(), "little")


@functools.lru_cache(maxsize=1 << 17)
def _word_id(word: str) -> int:
    """The term id of a raw word, ``-1`` for a stop word (cached: vocabularies repeat)."""
    lower = word.lower()
    return -1 if lower in _STOP else term_id(_fold(lower))


def _ids(text: str) -> list[int]:
    return [i for i in map(_word_id, _TOKEN.findall(text)) if i >= 0]


def _weight(count: int, norm: float) -> float:
    """BM25's term-frequency saturation for a term seen ``count`` times (no IDF factor)."""
    return count * (K1 + 1.0) / (count + norm)


def _norm(length: int) -> float:
    return K1 * (1.0 - B + B * length / AVG_LEN)


def document_vector(text: str) -> tuple[list[int], list[float]]:
    """``(indices, values)`` of a memory: BM25 term weights without the IDF factor."""
    words = _ids(text)
    if not words:
        return [], []
    norm = _norm(len(words))
    counts: Counter[int] = Counter(words)
    indices = sorted(counts)
    return indices, [_weight(counts[i], norm) for i in indices]


def document_terms(text: str) -> dict[str, float]:
    """The same weights as :func:`document_vector`, keyed by the indexed word rather than its
    hash: for stores that keep their own inverted index by word (pgvector's terms table)."""
    words = tokens(text)
    if not words:
        return {}
    norm = _norm(len(words))
    counts = Counter(words)
    return {word: _weight(counts[word], norm) for word in sorted(counts)}


def query_terms(text: str) -> list[str]:
    """The distinct indexed words of a query, sorted (each weighs once; the store's IDF
    does the rest)."""
    return sorted(set(tokens(text)))


def query_vector(text: str) -> tuple[list[int], list[float]]:
    """``(indices, values)`` of a query: each distinct word once (the IDF comes from the
    store)."""
    indices = sorted(set(_ids(text)))
    return indices, [1.0] * len(indices)


def idf(document_frequency: int, total: int) -> float:
    """BM25's inverse document frequency (the ``+ 1`` keeps it positive; same as Qdrant's)."""
    return math.log(1.0 + (total - document_frequency + 0.5) / (document_frequency + 0.5))


def fuse(rankings: Sequence[Sequence[ScoredMemory]], limit: int) -> list[ScoredMemory]:
    """Reciprocal rank fusion of ``rankings`` (each best first): the ``limit`` best, each
    scored ``sum(1 / (RRF_K + rank))`` with ranks from 1. Ties keep the first ranking's order."""
    scores: dict[str, float] = {}
    first: dict[str, ScoredMemory] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            key = hit.memory.id
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
            first.setdefault(key, hit)
    order = sorted(scores, key=lambda k: -scores[k])  # stable: first-seen order breaks ties
    return [ScoredMemory(first[k].memory, scores[k]) for k in order[:limit]]


async def fused_search(
    dense: Callable[..., Awaitable[list[ScoredMemory]]],
    words: Callable[[str, int, Mapping[str, Any] | None], Awaitable[list[ScoredMemory]]],
    query_text: str,
    query_vector: Sequence[float] | None,
    limit: int,
    filter: Mapping[str, Any] | None,
    mode: SearchMode,
) -> list[ScoredMemory]:
    """A store's ``hybrid_search`` from its two halves, its ``search(vector, limit, *,
    filter)`` and ``words(text, limit, filter)``, for stores that fuse in Python: ``lexical``
    is the words alone, ``dense`` (or ``hybrid`` without a vector) the vectors alone,
    ``hybrid`` both, each :func:`candidates` deep, fused by reciprocal rank."""
    if limit <= 0:
        return []
    if mode == "dense" or (mode == "hybrid" and query_vector is None):
        if query_vector is None:
            raise ValueError("a dense search needs a query vector")
        return await dense(query_vector, limit, filter=filter)
    depth = candidates(limit) if mode == "hybrid" else limit
    found = await words(query_text, depth, filter)
    if mode == "lexical" or query_vector is None:
        return found
    return fuse([await dense(query_vector, depth, filter=filter), found], limit)


def candidates(limit: int) -> int:
    """How many results each half of a hybrid search fetches for a final ``limit``."""
    return max(limit, CANDIDATES)


async def search_store(
    store: Any,
    mode: SearchMode,
    text: str,
    vector: Sequence[float],
    limit: int,
    filter: Mapping[str, Any],
) -> list[ScoredMemory]:
    """Search ``store`` as ``[memory] search`` says.

    Stores with ``hybrid_search`` (flujo-memory's qdrant, memory and pgvector) run the mode
    asked for. A store without it (a third-party store, chroma) can only search densely:
    ``hybrid`` then degrades to dense (documented), and ``lexical`` is a configuration error
    rather than a silent dense search.
    """
    hybrid = getattr(store, "hybrid_search", None)
    if mode != "dense" and hybrid is not None:
        results: list[ScoredMemory] = await hybrid(text, vector, limit, filter=filter, mode=mode)
        return results
    if mode == "lexical":
        raise LexicalUnsupportedError(
            f'[memory] search = "lexical": the {type(store).__name__} store has no lexical '
            'index; use search = "hybrid" or "dense", or another store'
        )
    dense: list[ScoredMemory] = await store.search(vector, limit, filter=filter)
    return dense
