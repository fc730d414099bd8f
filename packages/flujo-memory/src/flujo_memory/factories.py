"""Factories Flujo calls (with the validated config) to create the registered stores and
embedders. Heavy imports happen here, only when a store or embedder is used."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from flujo_memory.embedders import env_value
from flujo_memory.settings import SECTION, MemorySettings

if TYPE_CHECKING:
    from flujo.config import FlujoConfig


def _settings(config: FlujoConfig) -> MemorySettings:
    return config.section(SECTION, MemorySettings)


def qdrant_store(config: FlujoConfig) -> Any:
    """``qdrant``: embedded on disk at ``[memory] path``, or the server at ``[memory] url``."""
    s = _settings(config)
    if s.url:
        from flujo_memory.stores.qdrant import QdrantServerStore

        return QdrantServerStore(s.url, api_key=env_value(s.api_key_env), collection=s.collection)
    from flujo_memory.stores.qdrant import QdrantEdgeStore

    return QdrantEdgeStore(config.root / s.path, s.collection)


def memory_store(config: FlujoConfig) -> Any:
    """``memory``: in-process exact numpy store (nothing persisted)."""
    from flujo_memory.stores.memory import InMemoryStore

    return InMemoryStore()


def chroma_store(config: FlujoConfig) -> Any:
    """``chroma``: chromadb's embedded persistent client under ``[memory] path``/chroma."""
    from flujo_memory.stores.chroma import ChromaStore

    s = _settings(config)
    return ChromaStore(config.root / s.path / "chroma", s.collection)


def pgvector_store(config: FlujoConfig) -> Any:
    """``pgvector``: PostgreSQL with pgvector at ``[memory] dsn`` (extra ``[pgvector]``)."""
    from flujo.domain.errors import ConfigError
    from flujo_memory.stores.pgvector import PgVectorStore

    s = _settings(config)
    if not s.dsn:
        raise ConfigError('[memory] store = "pgvector" needs [memory] dsn = "postgresql://..."')
    return PgVectorStore(s.dsn, s.collection, ef_search=s.pgvector_ef_search)


def hashing_embedder(config: FlujoConfig) -> Any:
    """``hashing``: deterministic feature hashing (``[memory] hashing_dimension``)."""
    from flujo_memory.embedders import HashingEmbedder

    return HashingEmbedder(_settings(config).hashing_dimension)


def wordllama_embedder(config: FlujoConfig) -> Any:
    """``wordllama``: semantic, offline (the model ships in the wheel); the default."""
    from flujo_memory.embedders import WordLlamaEmbedder

    return WordLlamaEmbedder(_settings(config).wordllama_dimension)


def openai_embedder(config: FlujoConfig) -> Any:
    """``openai``: any OpenAI-compatible ``/v1/embeddings`` endpoint."""
    from flujo_memory.embedders import OpenAIEmbedder

    s = _settings(config)
    return OpenAIEmbedder(
        base_url=os.environ.get("OPENAI_BASE_URL") or s.openai_base_url,
        model=s.openai_model,
        api_key=env_value(s.openai_api_key_env),
        dimensions=s.openai_dimensions,
        timeout_s=s.openai_timeout_s,
    )


def fastembed_embedder(config: FlujoConfig) -> Any:
    """``fastembed``: local ONNX model (extra ``flujo-memory[fastembed]``)."""
    from flujo_memory.embedders import FastEmbedEmbedder

    return FastEmbedEmbedder(_settings(config).fastembed_model)
