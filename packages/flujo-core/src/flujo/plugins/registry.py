"""Named factories that plugins register, by kind (policies, sandboxes, ...)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args, overload

from flujo.domain.errors import ConfigError, PluginError, UserError

if TYPE_CHECKING:
    from flujo.config import FlujoConfig
    from flujo.domain.interfaces import (
        Embedder,
        Engine,
        Evaluator,
        GovernancePolicy,
        SandboxProtocol,
        StateBackend,
        StateLocation,
        VectorStoreProtocol,
    )

Kind = Literal[
    "policies",
    "vector_stores",
    "embedders",
    "sandboxes",
    "evaluators",
    "tools",
    "state_backends",
    "engines",
]
KINDS: tuple[Kind, ...] = get_args(Kind)
_SINGULAR = {
    "policies": "policy",
    "vector_stores": "vector store",
    "embedders": "embedder",
    "sandboxes": "sandbox",
    "evaluators": "evaluator",
    "tools": "tool",
    "state_backends": "state backend",
    "engines": "engine",
}


_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")


def singular(kind: Kind) -> str:
    """One object of ``kind`` in words, for messages: ``"vector store"``."""
    return _SINGULAR[kind]


@dataclass(frozen=True, slots=True)
class Registration:
    """A factory and the plugin that registered it."""

    name: str
    owner: str
    factory: Callable[[Any], Any]
    """``factory(config)``; for a state backend ``factory(location)``."""


class Registry:
    """Every named factory, per kind. The first plugin to register a name keeps it."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Registration]] = {k: {} for k in KINDS}

    def add(self, kind: Kind, name: str, factory: Callable[[Any], Any], owner: str) -> None:
        """Record ``factory`` under ``name``; raise :class:`PluginError` if the name is taken."""
        if not isinstance(name, str) or not name:
            raise PluginError(
                owner, f"registered a {_SINGULAR[kind]} with an invalid name {name!r}"
            )
        if kind == "tools":
            from flujo.domain.scope import tool_id_problem

            problem = tool_id_problem(name)
            if problem is not None:
                raise PluginError(owner, f"tool id {name!r} is invalid: {problem}")
        if kind == "state_backends" and not _SCHEME.fullmatch(name):
            raise PluginError(
                owner,
                f"registered a state backend under {name!r}, which is not a URI scheme "
                "(lower-case letter, then letters, digits, '+', '-' or '.')",
            )
        if not callable(factory):
            raise PluginError(owner, f"{_SINGULAR[kind]} {name!r}: factory is not callable")
        taken = self._entries[kind].get(name)
        if taken is not None:
            raise PluginError(
                owner,
                f"{_SINGULAR[kind]} name {name!r} is already registered by {taken.owner!r}; "
                "this plugin was not loaded",
            )
        self._entries[kind][name] = Registration(name, owner, factory)

    def remove_owner(self, owner: str) -> None:
        """Forget everything ``owner`` registered (used when a plugin fails half-way)."""
        for entries in self._entries.values():
            for name in [n for n, r in entries.items() if r.owner == owner]:
                del entries[name]

    def names(self, kind: Kind) -> list[str]:
        """Registered names of ``kind``, sorted."""
        return sorted(self._entries[kind])

    def owned_by(self, owner: str) -> dict[str, list[str]]:
        """What ``owner`` registered: ``{kind: [names]}`` for every kind."""
        return {
            kind: sorted(n for n, r in entries.items() if r.owner == owner)
            for kind, entries in self._entries.items()
        }

    def get(self, kind: Kind, name: str) -> Registration:
        """The registration of ``name``; a :class:`ConfigError` naming the choices if absent."""
        try:
            return self._entries[kind][name]
        except KeyError:
            raise ConfigError(self.unknown(kind, name)) from None

    def unknown(self, kind: Kind, name: str) -> str:
        """The message for an unregistered ``name``: every registered name of ``kind`` and the
        plugin that registered it, so a typo or a missing plugin is plain to see."""
        entries = self._entries[kind]
        known = ", ".join(f"{n} ({entries[n].owner})" for n in sorted(entries))
        known = known or "none (is the plugin installed?)"
        return f"unknown {_SINGULAR[kind]} {name!r}; registered: {known}"

    @overload
    def create(
        self, kind: Literal["policies"], name: str, config: FlujoConfig
    ) -> GovernancePolicy: ...
    @overload
    def create(
        self, kind: Literal["vector_stores"], name: str, config: FlujoConfig
    ) -> VectorStoreProtocol: ...
    @overload
    def create(self, kind: Literal["embedders"], name: str, config: FlujoConfig) -> Embedder: ...
    @overload
    def create(
        self, kind: Literal["sandboxes"], name: str, config: FlujoConfig
    ) -> SandboxProtocol: ...
    @overload
    def create(self, kind: Literal["evaluators"], name: str, config: FlujoConfig) -> Evaluator: ...
    @overload
    def create(
        self, kind: Literal["tools"], name: str, config: FlujoConfig
    ) -> Callable[..., object]: ...
    @overload
    def create(self, kind: Literal["engines"], name: str, config: FlujoConfig) -> Engine: ...
    @overload
    def create(self, kind: Kind, name: str, config: FlujoConfig) -> object: ...
    def create(self, kind: Kind, name: str, config: FlujoConfig) -> object:
        """Call the factory of ``name`` with ``config``; factory errors name the plugin.

        Typed per kind: a policy is a :class:`~flujo.domain.interfaces.GovernancePolicy`, a
        sandbox a :class:`~flujo.domain.interfaces.SandboxProtocol`, and so on (what each
        ``flujo_register_*`` hook promises its factories return)."""
        if kind == "state_backends":
            raise UserError(
                "a state backend is opened from its URI, not created by name: "
                "use flujo.plugin.open_state(config)"
            )
        reg = self.get(kind, name)
        try:
            created: object = reg.factory(config)
            return created
        except UserError:
            raise  # the user must fix it (a missing setting): one line, exit 2
        except Exception as exc:
            raise PluginError(
                reg.owner, f"could not create {_SINGULAR[kind]} {name!r}: {exc}"
            ) from exc

    def state_backend(self, location: StateLocation, *, what: str = "[state] uri") -> StateBackend:
        """The (unopened) backend registered for ``location.scheme``, made by its factory.

        An unknown scheme is a :class:`ConfigError` naming ``what`` (the setting or option the
        URI came from) and every registered scheme with its plugin.
        """
        from flujo.state.dsn import redact_dsn

        entries = self._entries["state_backends"]
        reg = entries.get(location.scheme)
        if reg is None:
            raise ConfigError(
                f"{what} {redact_dsn(location.uri)!r}: "
                f"{self.unknown('state_backends', location.scheme)}"
            )
        try:
            backend: StateBackend = reg.factory(location)
        except UserError:
            raise
        except Exception as exc:
            raise PluginError(
                reg.owner, f"could not create state backend {location.scheme!r}: {exc}"
            ) from exc
        return backend
