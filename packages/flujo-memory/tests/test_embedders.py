"""Embedders: the OpenAI-compatible one over real HTTP to a loopback server, and hashing.

Every embedder flujo-memory ships passes the core's EmbedderConformance: hashing, WordLlama
(a dependency, so never skipped), the OpenAI-compatible one against the loopback server, and
FastEmbed when its extra is installed and its model may be downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from memtest_pipelines import learn_only, recall_only

from flujo import Flujo, RunStatus
from flujo.testing.conformance import EmbedderConformance
from flujo_memory.embedders import HashingEmbedder, OpenAIEmbedder
from flujo_memory.errors import EmbedderError, ExtraNotInstalledError


class EmbeddingsServer:
    """A loopback ``POST /v1/embeddings`` server (vectors from the hashing embedder)."""

    def __init__(self, dimension: int = 16) -> None:
        self.embedder = HashingEmbedder(dimension)
        self.requests: list[dict[str, Any]] = []
        self.fail_next = 0
        self.headers: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.headers.append(self.headers.get("Authorization"))
                if self.path != "/v1/embeddings":
                    self._send(404, {"error": "not found"})
                elif server.fail_next > 0:
                    server.fail_next -= 1
                    self._send(503, {"error": "overloaded"})
                else:
                    texts = body["input"]
                    data = [
                        {
                            "object": "embedding",
                            "index": i,
                            "embedding": server.embedder.embed_one(t),
                        }
                        for i, t in reversed(list(enumerate(texts)))
                    ]
                    self._send(200, {"object": "list", "data": data, "model": body["model"]})

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> EmbeddingsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[EmbeddingsServer]:
    with EmbeddingsServer() as srv:
        yield srv


async def test_openai_embedder_over_http(server: EmbeddingsServer) -> None:
    embedder = OpenAIEmbedder(base_url=server.url, model="tiny", api_key="sk-test")
    assert embedder.dimension == 0  # unknown model: learnt from the first response
    vectors = await embedder.embed(["alpha beta", "gamma"])
    await embedder.aclose()
    assert vectors == [server.embedder.embed_one("alpha beta"), server.embedder.embed_one("gamma")]
    assert embedder.dimension == 16
    assert embedder.identity == "openai:tiny:16"
    assert server.requests == [{"model": "tiny", "input": ["alpha beta", "gamma"]}]
    assert server.headers == ["Bearer sk-test"]


async def test_openai_embedder_errors_are_embedder_errors(server: EmbeddingsServer) -> None:
    server.fail_next = 1
    embedder = OpenAIEmbedder(base_url=server.url, model="tiny", dimensions=16)
    with pytest.raises(EmbedderError, match="HTTP 503"):
        await embedder.embed(["x"])
    assert server.requests[-1]["dimensions"] == 16
    wrong = OpenAIEmbedder(base_url=server.url, model="tiny", dimensions=8)
    with pytest.raises(EmbedderError, match="expected 8"):
        await wrong.embed(["x"])
    await embedder.aclose()
    await wrong.aclose()


async def test_pipeline_indexes_through_the_http_embedder_with_retries(
    tmp_path: Path, server: EmbeddingsServer, config_file: Callable[..., Path]
) -> None:
    server.fail_next = 2  # the first two embeddings requests fail; the indexer retries
    cfg = config_file(
        index_steps=["learn"],
        embedder="openai",
        openai_base_url=server.url,
        openai_model="tiny",
        retry_base_s=0.01,
    )
    async with Flujo(learn_only, config=cfg) as runner:
        first = await runner.run_async("the deploy freeze starts friday")
        report = await runner.services["memory"].flush()
    assert first.status is RunStatus.SUCCEEDED
    assert report.pending == 0
    async with Flujo(recall_only, config=cfg) as runner:
        second = await runner.run_async("fact: deploy freeze")
    assert second.output == ["fact: the deploy freeze starts friday"]


def test_hashing_embedder_is_deterministic_and_normalised() -> None:
    embedder = HashingEmbedder(64)
    a, b = embedder.embed_one("Tea with milk"), embedder.embed_one("tea with MILK")
    assert a == b
    assert len(a) == 64
    assert abs(sum(x * x for x in a) - 1.0) < 1e-9
    assert embedder.embed_one("") == [0.0] * 64


def test_fastembed_without_the_extra_names_it() -> None:
    import importlib.util

    if importlib.util.find_spec("fastembed") is not None:
        pytest.skip("fastembed is installed; this checks the error without it")
    from flujo_memory.embedders import FastEmbedEmbedder

    with pytest.raises(ExtraNotInstalledError, match=r"flujo-memory\[fastembed\]"):
        FastEmbedEmbedder()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every attempt to resolve or connect is recorded and refused (loopback included)."""
    import socket

    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args[:2]))
        raise OSError("network access is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_wordllama_loads_its_bundled_model_without_the_network(
    no_network: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No user cache to fall back on either: the model must come from the wheel itself.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from flujo_memory.embedders import WordLlamaEmbedder

    embedder = WordLlamaEmbedder()
    [vector] = embedder.embed_sync(["the invoice was paid twice"])
    assert no_network == []
    assert embedder.dimension == len(vector) == 256
    assert embedder.identity == "wordllama:l2_supercat:256"
    assert abs(sum(x * x for x in vector) - 1.0) < 1e-4


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_wordllama_is_semantic_where_hashing_is_not(no_network: list[str]) -> None:
    """A paraphrase with no word in common is closer than an unrelated text: meaning, not
    shared words (the hashing embedder scores both 0)."""
    from flujo_memory.embedders import WordLlamaEmbedder

    texts = [
        "the customer wants their money back",
        "client requesting a refund",
        "the weather forecast predicts heavy snowfall",
    ]
    query, paraphrase, unrelated = await WordLlamaEmbedder().embed(texts)
    assert _cosine(query, paraphrase) > _cosine(query, unrelated) + 0.1
    hashed = [HashingEmbedder(384).embed_one(t) for t in texts]
    assert _cosine(hashed[0], hashed[1]) == pytest.approx(0.0)
    assert no_network == []


def test_wordllama_truncated_dimension_and_bad_dimension() -> None:
    from flujo_memory.embedders import WordLlamaEmbedder
    from flujo_memory.errors import EmbedderConfigError

    small = WordLlamaEmbedder(64)
    assert len(small.embed_sync(["x y"])[0]) == 64
    assert small.identity.endswith(":64")
    assert small.embed_sync([]) == []
    with pytest.raises(EmbedderConfigError, match="64, 128 or 256"):
        WordLlamaEmbedder(100)


class TestHashingEmbedderConformance(EmbedderConformance):
    @pytest.fixture
    def embedder(self) -> HashingEmbedder:
        return HashingEmbedder(64)


class TestWordLlamaEmbedderConformance(EmbedderConformance):
    @pytest.fixture
    def embedder(self) -> Any:
        from flujo_memory.embedders import WordLlamaEmbedder

        return WordLlamaEmbedder()


class TestOpenAIEmbedderConformance(EmbedderConformance):
    """Over real HTTP to the loopback server (its vectors are the hashing embedder's, sent in
    reverse order with their indexes); the model's dimension is learnt from the first answer."""

    @pytest_asyncio.fixture
    async def embedder(self) -> AsyncIterator[OpenAIEmbedder]:
        with EmbeddingsServer() as srv:
            embedder = OpenAIEmbedder(base_url=srv.url, model="local-model")
            try:
                yield embedder
            finally:
                await embedder.aclose()


class TestFastEmbedEmbedderConformance(EmbedderConformance):
    @pytest.fixture
    def embedder(self) -> Any:
        # An optional extra, not in the test extra CI installs: a skip there is expected.
        if importlib.util.find_spec("fastembed") is None:
            pytest.skip("fastembed is not installed (the flujo-memory[fastembed] extra)")
        if os.environ.get("FLUJO_TEST_FASTEMBED") != "1":
            pytest.skip(
                "fastembed downloads its model over the network; set FLUJO_TEST_FASTEMBED=1 "
                "where that is allowed"
            )
        from flujo_memory.embedders import FastEmbedEmbedder

        return FastEmbedEmbedder()


# Texts where tokenizing word by word could go wrong: space runs, leading/trailing spaces,
# tabs and newlines, a literal "▁", the special tokens' texts (split off before normalising),
# non-Latin scripts (byte fallback), an empty text and one long run without spaces.
TRICKY = [
    "",
    " ",
    "  two  spaces  between  ",
    "tab\tand\nnewline\r\nthen",
    "▁already ▁▁normalised",
    "<s> starts </s> and <unk> inside",
    "x<s>y",
    "héllo wörld, 日本語のテキスト 🙂 — ünïcödé",
    "snake_case_identifier(arg=1, **kwargs) -> Dict[str, Any]:",
    "a" * 3000,
    "  \n  ",
]


def _reference(embedder: Any, texts: list[str]) -> Any:
    """WordLlama's mean of token vectors with the tokenizer run over each whole text: what
    the embedder computed before it tokenized word by word and pooled block by block."""
    import numpy as np

    out = np.zeros((len(texts), embedder.dimension), dtype=np.float64)
    for i, text in enumerate(texts):
        ids = embedder._tokenizer.encode(text, add_special_tokens=False).ids
        if ids:
            out[i] = embedder._table[np.asarray(ids)].astype(np.float64).sum(axis=0)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=out, where=norms > 0)


def test_wordllama_word_by_word_tokens_are_the_tokenizers_own() -> None:
    """Token ids from the word cache equal the tokenizer's over the whole text, for tricky
    texts and for real prose (this package's own README), warm cache included."""
    from flujo_memory.embedders import WordLlamaEmbedder

    embedder = WordLlamaEmbedder()
    assert embedder._words_safe
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    texts = TRICKY + [p for p in readme.split("\n\n") if p.strip()]
    expected = [embedder._tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
    assert embedder._token_ids(texts) == expected
    assert embedder._token_ids(list(reversed(texts))) == list(reversed(expected))  # warm


def test_wordllama_vectors_equal_the_whole_text_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    """Block-by-block pooling gives each text the mean of its own token vectors, whether a
    block holds many texts, one text longer than a block, or texts without tokens."""
    import numpy as np

    from flujo_memory import embedders

    monkeypatch.setattr(embedders, "_POOL_BLOCK", 64)  # many blocks even for short texts
    embedder = embedders.WordLlamaEmbedder()
    texts = TRICKY + [f"memory number {i} about invoices and refunds" for i in range(40)]
    got = np.asarray(embedder.embed_sync(texts))
    assert np.abs(got - _reference(embedder, texts)).max() < 1e-5


def test_wordllama_word_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from flujo_memory import embedders

    monkeypatch.setattr(embedders, "_WORD_CACHE", 50)
    embedder = embedders.WordLlamaEmbedder()
    texts = [" ".join(f"w{i}x{j}" for j in range(30)) for i in range(20)]
    for text in texts:
        embedder.embed_sync([text])
        assert len(embedder._word_ids) <= 50 + 31
    assert embedder._token_ids(texts) == [
        embedder._tokenizer.encode(t, add_special_tokens=False).ids for t in texts
    ]
