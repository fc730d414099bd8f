"""Errors flujo-memory raises on purpose.

User mistakes (a search without a scope, a collection built by another embedder, a store that
cannot be reached) derive from :class:`~flujo.domain.errors.UserError`, so the ``flujo`` CLI
prints them as one line and exits with code 2.
"""

from __future__ import annotations

from flujo.domain.errors import FlujoError, UserError


class MemoryUserError(UserError):
    """Base class of the user errors of flujo-memory."""


class ScopeRequiredError(MemoryUserError):
    """A search or an indexed memory lacks a value for a configured ``[memory] scope_fields``."""


class DimensionMismatchError(MemoryUserError):
    """A vector's length differs from the dimension of the collection it goes to."""


class CollectionMismatchError(MemoryUserError):
    """The collection was built with another embedder (or dimension) than the configured one."""


class StoreUnavailableError(MemoryUserError):
    """The vector store cannot be opened or reached (server down, embedded store locked)."""


class PgVectorExtensionError(StoreUnavailableError):
    """The ``pgvector`` store's server lacks the ``vector`` extension, or the role may not
    create it."""


class EmbedderConfigError(MemoryUserError):
    """An embedder is misconfigured or its optional dependency or model is missing."""


class ExtraNotInstalledError(MemoryUserError):
    """A store or embedder needs an optional extra (``flujo-memory[chroma]``, ``[fastembed]``)."""


class EmbedderError(FlujoError):
    """An embedder call failed (HTTP error, bad response). Indexing retries these."""
