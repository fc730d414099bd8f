"""The ``[memory]`` section of ``flujo.toml``."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

SECTION = "memory"

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class MemorySettings(BaseModel):
    """``[memory]``: where memories live, how they are embedded and what is indexed.

    Every key can be overridden from the environment: ``FLUJO__MEMORY__<KEY>=value``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str = "qdrant"
    """Registered vector store: ``qdrant`` (default), ``memory``, ``chroma``, ``pgvector`` or a
    plugin's."""
    embedder: str = "wordllama"
    """Registered embedder: ``wordllama`` (default, semantic, offline), ``hashing`` (lexical,
    no dependencies), ``openai``, ``fastembed``."""
    search: Literal["hybrid", "dense", "lexical"] = "hybrid"
    """How memories are found: ``hybrid`` (default: BM25 over the words and the embedder's
    vectors, fused by reciprocal rank), ``dense`` (vectors only) or ``lexical`` (BM25 only).
    Stores without a lexical index (chroma, third-party stores) search ``dense`` under
    ``hybrid``."""
    collection: str = Field(default="flujo", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """Collection (Qdrant collection / on-disk shard / Chroma collection) name."""

    index_steps: list[str] = Field(default_factory=list)
    """Glob patterns of step names whose successful outputs are remembered (``["*"]`` = all).
    Empty (the default) indexes nothing: remembering is opt-in."""
    scope_fields: list[str] = Field(default_factory=list)
    """Context fields that make up a memory's scope (e.g. ``["tenant", "user"]``). Every search
    is restricted to the scope of the asking context; a missing value is an error."""

    path: str = ".flujo/memory"
    """Folder of the embedded stores (``qdrant``, ``chroma``), relative to the config root."""
    url: str | None = None
    """Qdrant server or cluster URL (``http://qdrant:6333``); unset = embedded on disk."""
    api_key_env: str = "QDRANT_API_KEY"
    """Environment variable holding the Qdrant API key (read only when ``url`` is set)."""
    dsn: str | None = Field(default=None, validate_default=True)
    """PostgreSQL URI of the ``pgvector`` store (``postgresql://user@host:5432/db``); required
    when ``store = "pgvector"``. May be the state database's server: memories get their own
    tables. Leave the password out and use ``PGPASSWORD`` or ``~/.pgpass``, or set the whole
    value in ``FLUJO__MEMORY__DSN``."""
    pgvector_ef_search: int = Field(default=200, ge=1, le=1000)
    """``pgvector``: HNSW candidate list of index scans (``hnsw.ef_search``); higher = better
    recall, slower unfiltered queries."""
    exact: bool = True
    """Embedded ``qdrant``: exact (brute-force SIMD) search. ``false`` builds an HNSW index."""

    batch_size: int = Field(default=64, ge=1, le=4096)
    """How many outbox rows one embedder call and one store write take."""
    max_attempts: int = Field(default=5, ge=1)
    """Attempts per outbox row before it is marked ``failed`` (see ``flujo memory stats``)."""
    retry_base_s: float = Field(default=0.5, ge=0)
    """First retry delay; doubles per attempt (capped at 60 s)."""
    linger_ms: int = Field(default=20, ge=0)
    """How long the background indexer waits to gather a batch after a step completes."""
    max_text_chars: int = Field(default=8000, ge=1)
    """Step outputs longer than this are cut before embedding."""

    wordllama_dimension: Literal[64, 128, 256] = 256
    """Dimension of the ``wordllama`` embedder (smaller = truncated, faster, less precise)."""
    hashing_dimension: int = Field(default=384, ge=8, le=65536)
    """Dimension of the ``hashing`` embedder."""
    openai_base_url: str = "https://api.openai.com/v1"
    """Base URL of the OpenAI-compatible API (Ollama: ``http://localhost:11434/v1``). The
    ``OPENAI_BASE_URL`` environment variable wins when set."""
    openai_model: str = "text-embedding-3-small"
    """Embedding model name sent to ``/v1/embeddings``."""
    openai_api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (may be unset for local servers)."""
    openai_dimensions: int | None = Field(default=None, ge=1)
    """Requested output dimension (sent as ``dimensions``); unset = the model's own."""
    openai_timeout_s: float = Field(default=30.0, gt=0)
    """HTTP timeout of one embeddings request."""
    fastembed_model: str = "BAAI/bge-small-en-v1.5"
    """Model of the ``fastembed`` embedder (downloaded on first use)."""

    @field_validator("scope_fields")
    @classmethod
    def _valid_fields(cls, fields: list[str]) -> list[str]:
        for name in fields:
            if not _FIELD.match(name):
                raise ValueError(f"scope field {name!r} is not a valid context field name")
        if len(set(fields)) != len(fields):
            raise ValueError("scope fields must not repeat")
        return fields

    @field_validator("dsn")
    @classmethod
    def _valid_dsn(cls, dsn: str | None, info: ValidationInfo) -> str | None:
        if dsn is None:
            if info.data.get("store") == "pgvector":
                raise ValueError(
                    'store = "pgvector" needs dsn = "postgresql://user@host:5432/database"'
                )
            return None
        if not dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError("expected a PostgreSQL URI starting with postgresql://")
        return dsn

    @field_validator("index_steps")
    @classmethod
    def _no_blank_globs(cls, globs: list[str]) -> list[str]:
        if any(not g.strip() for g in globs):
            raise ValueError("index_steps must not contain empty patterns")
        return globs
