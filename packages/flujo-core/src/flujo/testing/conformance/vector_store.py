"""Conformance suite for :class:`~flujo.domain.interfaces.VectorStoreProtocol` implementations."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from flujo.domain.interfaces import Memory, ScoredMemory, VectorStoreProtocol

__all__ = ["VectorStoreConformance"]

QUERY_AXIS = 0
"""Queries point along the first axis; each memory's similarity to it is chosen exactly."""


def _unit_orthogonal(rng: random.Random, dimension: int) -> list[float]:
    """A random unit vector with no component along :data:`QUERY_AXIS`."""
    while True:
        v = [0.0] + [rng.gauss(0.0, 1.0) for _ in range(dimension - 1)]
        norm = math.sqrt(sum(x * x for x in v))
        if norm > 1e-6:
            return [x / norm for x in v]


def _vector(similarity: float, dimension: int, rng: random.Random) -> list[float]:
    """A unit vector whose cosine with the query :func:`_query` is exactly ``similarity``.

    All vectors are unit length, so cosine, dot product and Euclidean distance rank them the
    same way: the suite holds whichever similarity the store uses.
    """
    side = math.sqrt(max(0.0, 1.0 - similarity * similarity))
    ortho = _unit_orthogonal(rng, dimension)
    v = [side * x for x in ortho]
    v[QUERY_AXIS] = similarity
    return v


def _query(dimension: int) -> list[float]:
    q = [0.0] * dimension
    q[QUERY_AXIS] = 1.0
    return q


def _spread(count: int) -> list[float]:
    """``count`` similarities evenly spread over (-0.99, 0.99): far apart even in float32."""
    if count == 1:
        return [0.5]
    return [-0.99 + 1.98 * i / (count - 1) for i in range(count)]


def _ids(results: Sequence[ScoredMemory]) -> list[str]:
    return [r.memory.id for r in results]


def _check_results(results: Any) -> list[ScoredMemory]:
    """``search`` returns a list of ``ScoredMemory`` with numeric scores, best first."""
    assert isinstance(results, list), f"search must return a list, got {type(results).__name__}"
    for r in results:
        assert isinstance(r, ScoredMemory), f"search results must be ScoredMemory, got {r!r}"
        assert isinstance(r.memory, Memory), f"ScoredMemory.memory must be a Memory: {r!r}"
        assert isinstance(r.score, (int, float)), f"score must be a number, got {r.score!r}"
        assert not isinstance(r.score, bool), f"score must be a number, got {r.score!r}"
        assert math.isfinite(r.score), f"score must be finite, got {r.score!r}"
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True), f"scores must be descending: {scores}"
    return results


class _Corpus:
    """200 memories in 10 scopes, 4 runs, 3 steps and 5 metadata buckets, with known ranks."""

    SIZE = 200

    def __init__(self, dimension: int) -> None:
        rng = random.Random(20240607)
        sims = _spread(self.SIZE)
        rng.shuffle(sims)
        self.similarity: dict[str, float] = {}
        self.memories: list[Memory] = []
        for i in range(self.SIZE):
            mid = f"mem-{i:03d}"
            self.similarity[mid] = sims[i]
            self.memories.append(
                Memory(
                    id=mid,
                    text=f"memory number {i}",
                    vector=_vector(sims[i], dimension, rng),
                    scope=f"scope-{i % 10}",
                    run_id=f"run-{i % 4}",
                    step_name=f"step-{i % 3}",
                    metadata={"bucket": i % 5, "parity": "even" if i % 2 == 0 else "odd"},
                )
            )

    def expected(self, match: Callable[[Memory], bool], limit: int) -> list[str]:
        """Ids of the ``limit`` closest memories that ``match``, closest first."""
        hits = sorted((m for m in self.memories if match(m)), key=lambda m: -self.similarity[m.id])
        return [m.id for m in hits[:limit]]


class VectorStoreConformance:
    """Checks that a vector store keeps the contract memory plugins and ``context.retrieve``
    rely on.

    Subclass it (the class name must start with ``Test``) and provide a ``store`` fixture that
    returns a **fresh, empty** store for every test::

        from flujo.testing.conformance import VectorStoreConformance

        class TestMyStore(VectorStoreConformance):
            @pytest.fixture
            def store(self, dimension):
                return MyStore(dimension=dimension)

    Optional fixture: ``dimension`` (default 8, at least 2), the length of every vector the
    suite stores and queries. All vectors are unit length, so the checks hold for cosine, dot
    product and Euclidean similarity alike; ``ScoredMemory.score`` only has to be higher for
    closer memories. Results are compared exactly, so approximate indexes must return exact
    results at these sizes (200 memories at most).

    Async checks are marked ``@pytest.mark.asyncio``, so they run in pytest-asyncio's strict
    and auto modes alike.
    """

    # ------------------------------------------------------------------ fixtures

    @pytest.fixture
    def store(self) -> VectorStoreProtocol:
        """The store under test, fresh and empty. **Required**: override it in your subclass."""
        pytest.fail(
            f"{type(self).__name__} must define a `store` fixture returning a fresh, empty store"
        )

    @pytest.fixture
    def dimension(self) -> int:
        """The dimension of every vector the suite uses. Default 8."""
        return 8

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _rng() -> random.Random:
        return random.Random(7)

    @staticmethod
    def _check_dimension(dimension: int) -> None:
        assert dimension >= 2, f"the `dimension` fixture must be at least 2, got {dimension}"

    async def _load_corpus(self, store: VectorStoreProtocol, dimension: int) -> _Corpus:
        self._check_dimension(dimension)
        corpus = _Corpus(dimension)
        await store.add(corpus.memories)
        return corpus

    # ------------------------------------------------------------------ checks

    @pytest.mark.asyncio
    async def test_search_on_empty_store_returns_empty_list(
        self, store: VectorStoreProtocol, dimension: int
    ) -> None:
        """Searching a store that holds nothing returns ``[]``, not ``None`` or an error."""
        self._check_dimension(dimension)
        results = await store.search(_query(dimension), 5)
        assert results == [], f"an empty store must return [], got {results!r}"

    @pytest.mark.asyncio
    async def test_add_empty_batch_is_a_no_op(
        self, store: VectorStoreProtocol, dimension: int
    ) -> None:
        """``add([])`` succeeds and stores nothing."""
        self._check_dimension(dimension)
        await store.add([])
        assert await store.search(_query(dimension), 5) == []

    @pytest.mark.asyncio
    async def test_search_returns_closest_first(
        self, store: VectorStoreProtocol, dimension: int
    ) -> None:
        """``search`` returns ``ScoredMemory`` items ordered closest first, with scores
        descending, whatever order the memories were added in."""
        self._check_dimension(dimension)
        rng = self._rng()
        sims = {"far": -0.5, "near": 0.95, "mid": 0.4, "close": 0.7, "off": 0.1}
        await store.add(
            [Memory(id=k, text=k, vector=_vector(s, dimension, rng)) for k, s in sims.items()]
        )
        results = _check_results(await store.search(_query(dimension), 5))
        assert _ids(results) == ["near", "close", "mid", "off", "far"], (
            f"expected closest first, got {_ids(results)}"
        )

    @pytest.mark.asyncio
    async def test_search_respects_limit(self, store: VectorStoreProtocol, dimension: int) -> None:
        """``search(..., limit)`` returns the ``limit`` closest memories, and every memory
        when fewer than ``limit`` are stored."""
        self._check_dimension(dimension)
        rng = self._rng()
        sims = _spread(10)
        await store.add(
            [
                Memory(id=f"m{i}", text=f"m{i}", vector=_vector(s, dimension, rng))
                for i, s in enumerate(sims)
            ]
        )
        top3 = _check_results(await store.search(_query(dimension), 3))
        assert _ids(top3) == ["m9", "m8", "m7"], f"expected the 3 closest, got {_ids(top3)}"
        everything = _check_results(await store.search(_query(dimension), 50))
        assert len(everything) == 10, f"limit 50 over 10 memories returned {len(everything)}"

    @pytest.mark.asyncio
    async def test_add_is_an_upsert_on_id(self, store: VectorStoreProtocol, dimension: int) -> None:
        """Adding a memory whose ``id`` is already stored replaces it (text, vector and
        metadata), and adding the same batch twice stores it once."""
        self._check_dimension(dimension)
        rng = self._rng()
        batch = [
            Memory(id=f"b{i}", text=f"b{i}", vector=_vector(s, dimension, rng))
            for i, s in enumerate([0.9, 0.6, 0.3])
        ]
        await store.add(batch)
        await store.add(batch)
        results = _check_results(await store.search(_query(dimension), 10))
        assert sorted(_ids(results)) == ["b0", "b1", "b2"], (
            f"adding a batch twice must not duplicate it: {_ids(results)}"
        )
        await store.add(
            [
                Memory(
                    id="b0",
                    text="replaced",
                    vector=_vector(-0.9, dimension, rng),
                    metadata={"version": 2},
                )
            ]
        )
        results = _check_results(await store.search(_query(dimension), 10))
        assert _ids(results) == ["b1", "b2", "b0"], (
            f"re-adding b0 with a new vector must move it: {_ids(results)}"
        )
        replaced = results[-1].memory
        assert replaced.text == "replaced", f"re-adding must replace the text: {replaced.text!r}"
        assert replaced.metadata == {"version": 2}, (
            f"re-adding must replace the metadata: {replaced.metadata!r}"
        )

    @pytest.mark.asyncio
    async def test_filter_by_scope_is_applied_before_limit(
        self, store: VectorStoreProtocol, dimension: int
    ) -> None:
        """With 200 memories in 10 scopes, a search filtered to one scope returns exactly that
        scope's ``limit`` nearest memories: the filter is applied *before* the limit, not to
        the global top ``limit``."""
        corpus = await self._load_corpus(store, dimension)
        results = _check_results(
            await store.search(_query(dimension), 5, filter={"scope": "scope-3"})
        )
        expected = corpus.expected(lambda m: m.scope == "scope-3", 5)
        assert _ids(results) == expected, f"expected {expected}, got {_ids(results)}"

    @pytest.mark.asyncio
    async def test_filter_by_run_id_and_step_name(
        self, store: VectorStoreProtocol, dimension: int
    ) -> None:
        """``filter`` keys ``run_id`` and ``step_name`` match by equality and combine with AND;
        when fewer memories match than ``limit``, all of them are returned."""
        corpus = await self._load_corpus(store, dimension)

        def match(m: Memory) -> bool:
            return m.run_id == "run-1" and m.step_name == "step-2"

        flt = {"run_id": "run-1", "step_name": "step-2"}
        top = _check_results(await store.search(_query(dimension), 4, filter=flt))
        assert _ids(top) == corpus.expected(match, 4), f"got {_ids(top)}"
        every = _check_results(await store.search(_query(dimension), 100, filter=flt))
        assert _ids(every) == corpus.expected(match, 100), (
            f"expected all {len(corpus.expected(match, 100))} matches, got {len(every)}"
        )

    @pytest.mark.asyncio
    async def test_filter_by_metadata(self, store: VectorStoreProtocol, dimension: int) -> None:
        """``filter`` keys that are not ``scope``, ``run_id`` or ``step_name`` match metadata
        keys by equality (values keep their type: the int ``2`` is not the string ``"2"``), and
        combine with the other keys with AND."""
        corpus = await self._load_corpus(store, dimension)
        results = _check_results(
            await store.search(_query(dimension), 5, filter={"bucket": 2, "run_id": "run-0"})
        )
        expected = corpus.expected(lambda m: m.metadata["bucket"] == 2 and m.run_id == "run-0", 5)
        assert _ids(results) == expected, f"expected {expected}, got {_ids(results)}"
        odd = _check_results(await store.search(_query(dimension), 5, filter={"parity": "odd"}))
        assert _ids(odd) == corpus.expected(lambda m: m.metadata["parity"] == "odd", 5)

    @pytest.mark.asyncio
    async def test_filter_matching_nothing_returns_empty_list(
        self, store: VectorStoreProtocol, dimension: int
    ) -> None:
        """A filter no memory matches returns ``[]`` (never the unfiltered results), including
        a metadata value of the wrong type (the string ``"2"`` does not match the int ``2``)."""
        await self._load_corpus(store, dimension)
        for flt in (
            {"scope": "no-such-scope"},
            {"scope": "scope-4", "parity": "odd"},
            {"bucket": "2"},
        ):
            results = await store.search(_query(dimension), 5, filter=flt)
            assert results == [], f"filter {flt} matches nothing, got {_ids(results)}"

    @pytest.mark.asyncio
    async def test_delete_by_ids(self, store: VectorStoreProtocol, dimension: int) -> None:
        """``delete(ids=[...])`` removes exactly those memories and returns how many it
        deleted; ids that are not stored count 0."""
        self._check_dimension(dimension)
        rng = self._rng()
        await store.add(
            [
                Memory(id=f"d{i}", text=f"d{i}", vector=_vector(s, dimension, rng))
                for i, s in enumerate(_spread(6))
            ]
        )
        assert await store.delete(ids=["d1", "d3"]) == 2
        remaining = _check_results(await store.search(_query(dimension), 10))
        assert sorted(_ids(remaining)) == ["d0", "d2", "d4", "d5"], f"got {_ids(remaining)}"
        assert await store.delete(ids=["d1", "missing"]) == 0

    @pytest.mark.asyncio
    async def test_delete_by_filter(self, store: VectorStoreProtocol, dimension: int) -> None:
        """``delete(filter={...})`` removes exactly the memories the filter matches (same
        matching as ``search``) and returns how many it deleted."""
        self._check_dimension(dimension)
        rng = self._rng()
        await store.add(
            [
                Memory(
                    id=f"f{i}",
                    text=f"f{i}",
                    vector=_vector(s, dimension, rng),
                    scope="a" if i % 2 == 0 else "b",
                    metadata={"tier": i % 3},
                )
                for i, s in enumerate(_spread(12))
            ]
        )
        assert await store.delete(filter={"scope": "a"}) == 6
        left = _check_results(await store.search(_query(dimension), 20))
        assert sorted(_ids(left)) == sorted(f"f{i}" for i in range(1, 12, 2)), f"got {_ids(left)}"
        # Of the odd ids left, tier 0 are f3 and f9.
        assert await store.delete(filter={"tier": 0}) == 2
        left = _check_results(await store.search(_query(dimension), 20))
        assert sorted(_ids(left)) == ["f1", "f11", "f5", "f7"], f"got {_ids(left)}"
        assert await store.delete(filter={"scope": "a"}) == 0

    @pytest.mark.asyncio
    async def test_concurrent_adds_do_not_lose_data(
        self, store: VectorStoreProtocol, dimension: int
    ) -> None:
        """Twenty ``add`` calls running at once (``asyncio.gather``) store every memory."""
        self._check_dimension(dimension)
        rng = self._rng()
        sims = _spread(100)
        batches = [
            [
                Memory(
                    id=f"c{b}-{i}",
                    text=f"c{b}-{i}",
                    vector=_vector(sims[b * 5 + i], dimension, rng),
                )
                for i in range(5)
            ]
            for b in range(20)
        ]
        await asyncio.gather(*(store.add(batch) for batch in batches))
        results = _check_results(await store.search(_query(dimension), 200))
        expected = sorted(m.id for batch in batches for m in batch)
        assert sorted(_ids(results)) == expected, (
            f"stored {len(results)} of {len(expected)} memories added concurrently"
        )

    @pytest.mark.asyncio
    async def test_fields_round_trip(self, store: VectorStoreProtocol, dimension: int) -> None:
        """A stored memory comes back from ``search`` with the same ``id``, ``text``
        (Unicode and newlines intact), ``scope``, ``run_id``, ``step_name``, ``created_at``
        and ``metadata`` (str, int, float and bool values, types kept)."""
        self._check_dimension(dimension)
        rng = self._rng()
        metadata: Mapping[str, Any] = {"source": "doc.md", "page": 3, "ratio": 0.25, "draft": False}
        original = Memory(
            id="rt-1",
            text="Ünïcødé ✓ — line one\nline two",
            vector=_vector(0.8, dimension, rng),
            scope="rt-scope",
            run_id="run-rt",
            step_name="step-rt",
            metadata=dict(metadata),
            created_at=1_700_000_000.5,
        )
        await store.add([original])
        results = _check_results(await store.search(_query(dimension), 1))
        assert len(results) == 1, f"expected the stored memory, got {_ids(results)}"
        got = results[0].memory
        for attr in ("id", "text", "scope", "run_id", "step_name"):
            assert getattr(got, attr) == getattr(original, attr), (
                f"{attr} did not round-trip: {getattr(got, attr)!r} != {getattr(original, attr)!r}"
            )
        assert got.created_at == pytest.approx(original.created_at, abs=1e-3), (
            f"created_at did not round-trip: {got.created_at!r}"
        )
        assert got.metadata == metadata, f"metadata did not round-trip: {got.metadata!r}"
        for key, value in metadata.items():
            assert type(got.metadata[key]) is type(value), (
                f"metadata[{key!r}] came back as {type(got.metadata[key]).__name__}, "
                f"not {type(value).__name__}"
            )
