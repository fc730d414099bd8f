"""Conformance suite for :class:`~flujo.domain.interfaces.Embedder` implementations."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import pytest

from flujo.domain.interfaces import Embedder

__all__ = ["EmbedderConformance"]

TEXTS = (
    "the invoice was paid twice",
    "client requesting a refund",
    "the weather forecast predicts heavy snowfall",
)
UNICODE = (
    "café naïve façade",  # precomposed accents
    "cafe\u0301 nai\u0308ve",  # combining marks
    "日本語のテキスト",
    "مرحبا بالعالم",  # right-to-left
    "emoji 🚀🔥 and a family 👨‍👩‍👧",
    "zero\u200bwidth and tab\tnewline\n",
)


class EmbedderConformance:
    """Checks that an embedder keeps the contract vector stores and memory plugins rely on:
    ``dimension`` declared and respected, one finite float vector per text in order, the same
    vector for the same text (across calls and whether embedded alone or in a batch), and
    ``embed`` an ``async`` method as :class:`~flujo.domain.interfaces.Embedder` says.

    Subclass it (the class name must start with ``Test``) and provide an ``embedder``
    fixture::

        from flujo.testing.conformance import EmbedderConformance

        class TestMyEmbedder(EmbedderConformance):
            @pytest.fixture
            def embedder(self):
                return MyEmbedder(dimension=64)

    Optional fixtures: ``long_text_chars`` (default 20,000), the length of the long input
    the embedder must accept (truncating is fine, raising is not); ``tolerance`` (default
    1e-5), how far the same text's vectors may differ between calls and batch positions
    (floating-point batching differs slightly in some libraries).

    An embedder that learns its dimension from its first answer (a remote model not known in
    advance) may declare ``0`` before it; it must declare the learnt one after.
    """

    # ------------------------------------------------------------------ fixtures

    @pytest.fixture
    def embedder(self) -> Embedder:
        """The embedder under test. **Required**: override it in your subclass."""
        pytest.fail(f"{type(self).__name__} must define an `embedder` fixture")

    @pytest.fixture
    def long_text_chars(self) -> int:
        """The length of the long input (characters). Default 20,000."""
        return 20_000

    @pytest.fixture
    def tolerance(self) -> float:
        """How far two vectors of the same text may differ, per component. Default 1e-5."""
        return 1e-5

    # ------------------------------------------------------------------ helpers

    @staticmethod
    async def _embed(embedder: Embedder, texts: Sequence[str]) -> list[list[float]]:
        """``embed(texts)``, checked for shape and values: one list of finite floats of the
        declared dimension per text."""
        before = embedder.dimension
        pending = embedder.embed(texts)
        assert inspect.isawaitable(pending), (
            f"embed() returned {type(pending).__name__}, not an awaitable: the protocol's "
            "embed is `async def` (run blocking work in a thread inside it)"
        )
        vectors: Any = await pending
        dimension = embedder.dimension
        assert isinstance(dimension, int), f"dimension is {dimension!r}, not an int"
        assert not isinstance(dimension, bool), f"dimension is {dimension!r}, not an int"
        if texts:
            assert dimension >= 1, f"dimension is {dimension} after embedding"
        assert before in (0, dimension), f"dimension changed from {before} to {dimension}"
        assert isinstance(vectors, list), f"embed() returned {type(vectors).__name__}, not a list"
        assert len(vectors) == len(texts), f"{len(vectors)} vectors for {len(texts)} texts"
        for i, vector in enumerate(vectors):
            assert isinstance(vector, list), (
                f"vector {i} is a {type(vector).__name__}, not a list of floats"
            )
            assert len(vector) == dimension, (
                f"vector {i} has {len(vector)} values; the declared dimension is {dimension}"
            )
            for j, x in enumerate(vector):
                assert isinstance(x, float), (
                    f"vector {i}[{j}] is a {type(x).__name__} ({x!r}), not a float"
                )
                assert math.isfinite(x), f"vector {i}[{j}] is {x}, not a finite number"
        return vectors

    @staticmethod
    def _close(a: list[float], b: list[float], tolerance: float, what: str) -> None:
        worst = max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)
        assert worst <= tolerance, f"{what}: vectors differ by up to {worst:g} (> {tolerance:g})"

    # ------------------------------------------------------------------ checks

    def test_dimension_is_declared(self, embedder: Embedder) -> None:
        dimension = getattr(embedder, "dimension", None)
        assert isinstance(dimension, int), f"dimension is {dimension!r}, not an int"
        assert not isinstance(dimension, bool), f"dimension is {dimension!r}, not an int"
        assert dimension >= 0, f"dimension is {dimension}"

    def test_embed_is_async_as_the_protocol_says(self, embedder: Embedder) -> None:
        assert inspect.iscoroutinefunction(embedder.embed), (
            "embed must be `async def` (Embedder.embed): callers await it on the event loop"
        )

    @pytest.mark.asyncio
    async def test_one_vector_per_text_of_the_declared_dimension(self, embedder: Embedder) -> None:
        vectors = await self._embed(embedder, list(TEXTS))
        assert len({tuple(v) for v in vectors}) == len(TEXTS), "different texts, same vector"

    @pytest.mark.asyncio
    async def test_any_sequence_is_accepted_and_left_unchanged(self, embedder: Embedder) -> None:
        texts = list(TEXTS)
        from_list = await self._embed(embedder, texts)
        assert texts == list(TEXTS), "embed() changed the list it was given"
        from_tuple = await self._embed(embedder, tuple(TEXTS))
        assert len(from_tuple) == len(from_list)

    @pytest.mark.asyncio
    async def test_deterministic(self, embedder: Embedder, tolerance: float) -> None:
        first = await self._embed(embedder, list(TEXTS))
        second = await self._embed(embedder, list(TEXTS))
        for i, (a, b) in enumerate(zip(first, second, strict=True)):
            self._close(a, b, tolerance, f"text {i} embedded twice")

    @pytest.mark.asyncio
    async def test_a_batch_equals_each_text_alone_in_order(
        self, embedder: Embedder, tolerance: float
    ) -> None:
        texts = [*TEXTS, TEXTS[0]]  # a duplicate too
        batch = await self._embed(embedder, texts)
        for i, text in enumerate(texts):
            [alone] = await self._embed(embedder, [text])
            self._close(batch[i], alone, tolerance, f"text {i} in a batch and alone")
        self._close(batch[0], batch[-1], tolerance, "one text twice in a batch")

    @pytest.mark.asyncio
    async def test_a_large_batch(self, embedder: Embedder, tolerance: float) -> None:
        texts = [f"note {i}: {TEXTS[i % len(TEXTS)]}" for i in range(300)]
        vectors = await self._embed(embedder, texts)
        [last] = await self._embed(embedder, [texts[-1]])
        self._close(vectors[-1], last, tolerance, "the last of 300 texts and alone")

    @pytest.mark.asyncio
    async def test_no_texts_no_vectors(self, embedder: Embedder) -> None:
        assert await self._embed(embedder, []) == []

    @pytest.mark.asyncio
    async def test_empty_and_blank_texts(self, embedder: Embedder) -> None:
        await self._embed(embedder, ["", " ", "\n\t"])

    @pytest.mark.asyncio
    async def test_unicode_texts(self, embedder: Embedder, tolerance: float) -> None:
        vectors = await self._embed(embedder, list(UNICODE))
        [again] = await self._embed(embedder, [UNICODE[2]])
        self._close(vectors[2], again, tolerance, "a CJK text in a batch and alone")

    @pytest.mark.asyncio
    async def test_long_input(self, embedder: Embedder, long_text_chars: int) -> None:
        words = " ".join(TEXTS)
        long_text = (words + " ") * (long_text_chars // (len(words) + 1) + 1)
        await self._embed(embedder, [long_text[:long_text_chars], TEXTS[0]])
