"""Embedders: ``wordllama`` (the default: semantic, offline, weights shipped in its wheel),
``hashing`` (dependency-free lexical fallback), ``openai`` (any OpenAI-compatible
``/v1/embeddings``) and ``fastembed`` (local ONNX, the ``flujo-memory[fastembed]`` extra).

Each has ``dimension`` and ``identity`` (``"name:model:dimension"``, recorded in the collection
so a collection is never searched with vectors from another model).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from flujo_memory.errors import EmbedderConfigError, EmbedderError, ExtraNotInstalledError

_TOKEN = re.compile(r"\w+", re.UNICODE)
_WORD = re.compile("\u2581+[^\u2581]*|[^\u2581]+")
"""A ``▁``-led word of WordLlama's normalised text (a run of ``▁`` and what follows it)."""
_WORD_CACHE = 1 << 18
"""Distinct words whose token ids WordLlama's embedder keeps (then it starts again)."""
_POOL_BLOCK = 8192
"""Token vectors WordLlama's embedder gathers at a time (8 MB at 256 dimensions)."""


_WORDLLAMA_NORMALIZER = {
    "type": "Sequence",
    "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
    ],
}
"""The normaliser :meth:`WordLlamaEmbedder._token_ids` reproduces (``▁`` first and for spaces)."""


def _has(text: str, needles: Sequence[str]) -> bool:
    return any(n in text for n in needles)


def _words_tokenize_alike(spec: Mapping[str, Any]) -> bool:
    """Whether BPE over a whole text equals BPE over its ``▁``-led words: the tokenizer is
    the normalise-then-BPE kind WordLlama ships (``▁`` for spaces, no pre-tokenizer) and no
    token or merge of its vocabulary puts a ``▁`` after another character."""
    model = spec.get("model") or {}
    if spec.get("normalizer") != _WORDLLAMA_NORMALIZER or spec.get("pre_tokenizer") is not None:
        return False
    if model.get("type") != "BPE":
        return False
    if model.get("dropout") or not isinstance(model.get("vocab"), dict):
        return False
    return not any("\u2581" in token.lstrip("\u2581") for token in model["vocab"])


class HashingEmbedder:
    """Deterministic feature hashing of words and word bigrams into ``dimension`` buckets.

    No model and no network: for tests and air-gapped smoke runs. Similarity is lexical (shared
    words), not semantic. Vectors are L2-normalised; an empty text embeds to a zero vector.
    """

    def __init__(self, dimension: int = 384) -> None:
        if dimension < 2:
            raise EmbedderConfigError(f"hashing embedder: dimension must be >= 2, got {dimension}")
        self.dimension = dimension
        self.identity = f"hashing:v1:{dimension}"

    def embed_one(self, text: str) -> list[float]:
        """The vector of one text (synchronous)."""
        vec = [0.0] * self.dimension
        words = [w.lower() for w in _TOKEN.findall(text)]
        features = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        for feature in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dimension
            sign = 1.0 if digest[4] & 1 else -1.0
            vec[bucket] += sign * (1.0 if " " not in feature else 0.5)
        norm = math.sqrt(sum(x * x for x in vec))
        return [x / norm for x in vec] if norm > 0 else vec

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order (large batches are hashed in a worker thread)."""
        if len(texts) > 32:
            return await asyncio.to_thread(lambda: [self.embed_one(t) for t in texts])
        return [self.embed_one(t) for t in texts]


_KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class OpenAIEmbedder:
    """Any OpenAI-compatible ``POST {base_url}/embeddings`` (OpenAI, Ollama, vLLM, TEI).

    ``dimension`` is ``dimensions`` when given, else the model's known size, else learnt from the
    first response (``0`` until then). HTTP failures raise :class:`EmbedderError`; the indexer
    retries them.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        dimensions: int | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.dimensions = dimensions
        self.timeout_s = timeout_s
        self.dimension = dimensions or _KNOWN_DIMENSIONS.get(model, 0)
        self._client: Any = None

    @property
    def identity(self) -> str:
        """``openai:<model>:<dimension>``."""
        return f"openai:{self.model}:{self.dimension}"

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.AsyncClient(timeout=self.timeout_s, headers=headers)
        return self._client

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order, from one HTTP request."""
        if not texts:
            return []
        import httpx

        body: dict[str, Any] = {"model": self.model, "input": list(texts)}
        if self.dimensions:
            body["dimensions"] = self.dimensions
        url = f"{self.base_url}/embeddings"
        try:
            response = await self._http().post(url, json=body)
        except httpx.HTTPError as exc:
            raise EmbedderError(f"embeddings request to {url} failed: {exc!r}") from exc
        if response.status_code != 200:
            raise EmbedderError(
                f"embeddings request to {url} returned HTTP {response.status_code}: "
                f"{response.text[:200]}"
            )
        try:
            items = sorted(response.json()["data"], key=lambda d: d["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbedderError(f"unexpected embeddings response from {url}: {exc!r}") from exc
        if len(vectors) != len(texts):
            raise EmbedderError(f"{url} returned {len(vectors)} embeddings for {len(texts)} texts")
        sizes = {len(v) for v in vectors}
        if len(sizes) != 1:
            raise EmbedderError(f"{url} returned embeddings of different sizes: {sorted(sizes)}")
        size = sizes.pop()
        if self.dimension and size != self.dimension:
            raise EmbedderError(
                f"{url} returned {size}-dimension embeddings; expected {self.dimension} "
                f"for model {self.model!r}"
            )
        self.dimension = size
        return vectors

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class FastEmbedEmbedder:
    """Local ONNX embeddings through ``fastembed`` (``pip install 'flujo-memory[fastembed]'``).

    The model is downloaded from the Hugging Face hub on first use (and cached); without network
    access that fails with :class:`EmbedderConfigError`.
    """

    def __init__(self, model: str = "BAAI/bge-small-en-v1.5") -> None:
        try:
            from fastembed import TextEmbedding  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ExtraNotInstalledError(
                "the 'fastembed' embedder needs the extra: pip install 'flujo-memory[fastembed]'"
            ) from exc
        try:
            self._model = TextEmbedding(model_name=model)
        except (OSError, ValueError, RuntimeError) as exc:
            raise EmbedderConfigError(
                f"fastembed could not load model {model!r} (it is downloaded on first use; "
                f"is the network reachable?): {exc}"
            ) from exc
        self.model = model
        probe = list(self._model.embed(["dimension probe"]))
        self.dimension = len(probe[0])
        self.identity = f"fastembed:{model}:{self.dimension}"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, computed in a worker thread."""

        def run() -> list[list[float]]:
            return [[float(x) for x in v] for v in self._model.embed(list(texts))]

        return await asyncio.to_thread(run)


class WordLlamaEmbedder:
    """Semantic embeddings from WordLlama's ``l2_supercat`` model (256 dimensions), offline.

    WordLlama is a static embedding model: token vectors distilled from an LLM's embedding
    codebook, average-pooled. Its weights (16 MB) and tokenizer ship inside the ``wordllama``
    wheel, so loading never needs the network. Version 0.4 looks for the tokenizer under a
    ``tokenizer/`` folder that the wheel does not have and then downloads it; pointing
    ``cache_dir`` at the package's own folder (whose ``tokenizers/`` holds the file) and setting
    ``disable_download`` finds the shipped file and makes a missing file an error instead of a
    download.
    """

    MODEL = "l2_supercat"

    def __init__(self, dimension: int = 256) -> None:
        if dimension not in (64, 128, 256):
            raise EmbedderConfigError(
                f"wordllama embedder: dimension must be 64, 128 or 256, got {dimension}"
            )
        try:
            import wordllama  # type: ignore[import-untyped,unused-ignore]
        except ImportError as exc:
            raise ExtraNotInstalledError(
                "the 'wordllama' embedder needs the wordllama package: pip install wordllama "
                '(or set [memory] embedder = "hashing")'
            ) from exc
        from pathlib import Path

        folder = Path(wordllama.__file__).parent
        try:
            # The shipped weights are 256-dimension; smaller sizes are Matryoshka truncations.
            self._model: Any = wordllama.WordLlama.load(
                config=self.MODEL,
                cache_dir=folder,
                dim=256,
                trunc_dim=None if dimension == 256 else dimension,
                disable_download=True,
            )
        except (OSError, ValueError) as exc:
            raise EmbedderConfigError(
                f"wordllama could not load its bundled model from {folder}: {exc}"
            ) from exc
        self.dimension = dimension
        self.identity = f"wordllama:{self.MODEL}:{dimension}"
        # A private tokenizer without padding (embed_sync pools each text's own tokens).
        import json

        import numpy as np
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_str(self._model.tokenizer.to_str())
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        # The same BPE without the normaliser and the template, for words (see _token_ids).
        spec = json.loads(self._model.tokenizer.to_str())
        self._words_safe = _words_tokenize_alike(spec)
        self._special = tuple(t["content"] for t in spec.get("added_tokens", ()))
        spec["normalizer"] = spec["post_processor"] = None
        self._word_tokenizer = Tokenizer.from_str(json.dumps(spec))
        self._word_tokenizer.no_padding()
        self._word_tokenizer.no_truncation()
        self._word_ids: dict[str, list[int]] = {}
        self._table = np.ascontiguousarray(self._model.embedding[:, :dimension], dtype=np.float32)

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """The tokenizer's ids of each text, computed word by word with a cache.

        The model's tokenizer has no pre-tokenizer: it turns spaces into ``▁`` and runs BPE
        over the whole text, so nothing is cached across texts and most of the embedding time
        went there. No token of this vocabulary has a ``▁`` after another character (checked
        when loading: ``_words_tokenize_alike``), so no merge crosses the start of a
        ``▁``-run and BPE over the whole text equals BPE over each ``▁``-led word,
        concatenated; words repeat across memories, so each is tokenized once. Texts holding
        a special token's text (``<s>``...) are split on it by the tokenizer first: those go
        through the tokenizer whole, as does every text if the vocabulary were not safe.
        """
        whole = [i for i, t in enumerate(texts) if not self._words_safe or _has(t, self._special)]
        out: list[list[int]] = [[] for _ in texts]
        if whole:
            encoded = self._tokenizer.encode_batch(
                [texts[i] for i in whole], add_special_tokens=False
            )
            for i, enc in zip(whole, encoded, strict=True):
                out[i] = enc.ids
        cache = self._word_ids
        if len(cache) > _WORD_CACHE:  # bounded: a stream of unique words must not grow it
            # A new dict rather than clear(): a concurrent call keeps reading its own.
            cache = self._word_ids = {}
        skip = set(whole)
        split = [
            _WORD.findall("\u2581" + t.replace(" ", "\u2581")) if t and i not in skip else []
            for i, t in enumerate(texts)
        ]
        missing = list(set(itertools.chain.from_iterable(split)).difference(cache))
        if missing:
            encoded = self._word_tokenizer.encode_batch(missing, add_special_tokens=False)
            cache.update(zip(missing, (e.ids for e in encoded), strict=True))
        for i, words in enumerate(split):
            if words:
                out[i] = list(itertools.chain.from_iterable(map(cache.__getitem__, words)))
        return out

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised vector per text (a text without tokens embeds to a zero vector).

        The same mean of token vectors as ``WordLlamaInference.embed``, computed without its
        padding: it pads every text of a batch to the longest one and gathers a
        ``batch x longest x dimension`` array, so one long memory made a batch of 64 cost 64
        long ones (and an empty text divided by a zero norm, giving NaN). Token vectors are
        gathered a block of texts at a time into one reused buffer: gathering a whole batch
        at once allocated (and page-faulted) a ``tokens x dimension`` array per call, which
        cost more than the arithmetic. (Summed text by text, the vectors may differ from the
        previous implementation's in the last bit of a float32: the same model, the same
        identity.)
        """
        import numpy as np

        if not texts:
            return []
        per_text = self._token_ids(list(texts))
        lengths = np.fromiter((len(i) for i in per_text), dtype=np.int64, count=len(per_text))
        ids = np.fromiter(
            itertools.chain.from_iterable(per_text), dtype=np.int64, count=int(lengths.sum())
        )
        np.clip(ids, 0, self._table.shape[0] - 1, out=ids)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        buffer = np.empty((max(_POOL_BLOCK, int(lengths.max())), self.dimension), np.float32)
        first = 0
        while first < len(texts):
            # Texts first..last-1: as many as fit in the buffer (at least one).
            limit = int(starts[first]) + buffer.shape[0]
            last = max(first + 1, int(np.searchsorted(ends, limit, side="right")))
            lo, hi = int(starts[first]), int(ends[last - 1])
            rows = buffer[: hi - lo]
            np.take(self._table, ids[lo:hi], axis=0, out=rows)
            # One sum per text: np.add.reduceat over the block walks the rows column by
            # column and was ten times slower.
            for i in range(first, last):
                if lengths[i]:
                    np.add.reduce(rows[starts[i] - lo : ends[i] - lo], axis=0, out=out[i])
            first = last
        norms = np.linalg.norm(out, axis=1, keepdims=True)  # the mean's norm: same direction
        np.divide(out, norms, out=out, where=norms > 0)
        rows_out: list[list[float]] = out.tolist()
        return rows_out

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order (large batches run in a worker thread)."""
        if len(texts) > 32:
            return await asyncio.to_thread(self.embed_sync, texts)
        return self.embed_sync(texts)


def identity_of(embedder: Any, name: str) -> str:
    """What a collection records about ``embedder`` (registered ``name`` if it has no
    ``identity``)."""
    identity = getattr(embedder, "identity", None)
    return str(identity) if identity else f"{name}:{getattr(embedder, 'dimension', '?')}"


def env_value(name: str) -> str | None:
    """An environment variable's value, ``None`` when unset or empty."""
    value = os.environ.get(name, "")
    return value or None
