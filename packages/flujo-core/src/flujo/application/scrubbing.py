"""What may leave the process: values scrubbed as they will be stored, and stable keys for
values a policy flags.

:class:`Scrubbing` is the one place the core (and plugins, through ``runtime.scrubbing``) turns
a value into what may be persisted or handed to another plugin:

- :meth:`Scrubbing.scrub` serializes the value the way the state backends do, then passes that
  JSON form through every active policy's ``scrub``; the Python type of the value does not
  matter (an ``int`` card number, a ``SimpleNamespace``, a dataclass with ``init=False``
  fields...), what is scrubbed is what will be written.
- :meth:`Scrubbing.key` gives a value that is used to *match* things across runs (a memory's
  scope, say) a stable form: the value's text when no policy flags it, and when one does a
  keyed hash, ``fp:<32 hex digits>`` (HMAC-SHA256). The same value always gets the same key,
  so matching and deleting by that value still work, and the value itself is never stored.
- A stored context carries the keys of its flagged fields (:data:`STORED_KEYS_FIELD`): a
  resumed run's context holds what was stored (``<EMAIL_1>``, numbered per run, the same for
  every customer), and only that record still says whose value it was. It holds keys, never
  values; :func:`split_stored_context` takes it off before the context is validated.

The fingerprint key
-------------------
The HMAC key is read from the ``FLUJO_FINGERPRINT_KEY`` environment variable (any string, at
least 16 characters). Without it, the key is kept in ``.flujo/fingerprint.key`` beside
``flujo.toml`` (created on first use, readable by its owner only). Keep that file out of
backups of the stored data, or better set the variable from a secret store in production:
whoever holds both the key and the stored keys can test guesses of a value. Losing or changing
the key means flagged values no longer match what was stored with the old key (deleting by
run or id still works).
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json, to_jsonable_python

from flujo.application._maybe_await import maybe_await
from flujo.domain.errors import ConfigError

if TYPE_CHECKING:
    from flujo.config import FlujoConfig
    from flujo.domain.context import PipelineContext
    from flujo.domain.interfaces import GovernancePolicy
    from flujo.plugins.manager import PluginManager

__all__ = [
    "FINGERPRINT_KEY_ENV",
    "FINGERPRINT_KEY_FILE",
    "FINGERPRINT_PREFIX",
    "STORED_KEYS_FIELD",
    "Scrubbing",
    "active_policy_names",
    "split_stored_context",
    "stored_form",
]

FINGERPRINT_KEY_ENV = "FLUJO_FINGERPRINT_KEY"
FINGERPRINT_KEY_FILE = ".flujo/fingerprint.key"
FINGERPRINT_PREFIX = "fp:"
STORED_KEYS_FIELD = "__flujo_keys__"
"""Where a stored context records its flagged fields: ``{field: [stored text, key]}``. No
context field can have this name (pydantic keeps names with a leading underscore private)."""
_MIN_KEY_CHARS = 16


def stored_form(value: Any) -> Any:
    """``value`` as plain JSON data (dicts, lists, strings, numbers, ``None``), exactly as the
    state backends serialize it (``to_json(..., serialize_unknown=True)``)."""
    return to_jsonable_python(value, serialize_unknown=True)


def _scrub_arguments(context: PipelineContext | None, value: Any) -> tuple[PipelineContext, Any]:
    """What a policy's ``scrub`` is called with: a context (an empty one for a value outside
    a run) and the value's stored form."""
    if context is None:
        from flujo.domain.context import PipelineContext

        context = PipelineContext()
    return context, stored_form(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else to_json(stored_form(value)).decode()


def active_policy_names(config: FlujoConfig, plugins: PluginManager) -> list[str]:
    """``[run] policies`` followed by those plugins turn on (``flujo_active_policies``)."""
    names = list(config.run.policies)
    for batch in plugins.call_each("flujo_active_policies", config=config):
        names += [n for n in batch if n not in names]
    return names


def _load_key(config: FlujoConfig | None, environ: Mapping[str, str]) -> bytes:
    configured = environ.get(FINGERPRINT_KEY_ENV)
    if configured is not None:
        if len(configured) < _MIN_KEY_CHARS:
            raise ConfigError(
                f"{FINGERPRINT_KEY_ENV} must be at least {_MIN_KEY_CHARS} characters long"
            )
        return configured.encode()
    root = config.root if config is not None else Path.cwd()
    path = root / FINGERPRINT_KEY_FILE
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable fingerprint key: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        # O_EXCL: two processes creating it at once agree on the one written first.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key.hex())
    return key


class Scrubbing:
    """The active policies' ``scrub`` methods, applied to what leaves the process.

    :param policies: the run's policies (those without ``scrub`` are ignored).
    :param config: where the fingerprint key file lives (its folder).
    :param environ: where ``FLUJO_FINGERPRINT_KEY`` is read (default ``os.environ``).
    """

    def __init__(
        self,
        policies: Sequence[GovernancePolicy | object],
        config: FlujoConfig | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        found = (getattr(p, "scrub", None) for p in policies)
        self._scrubbers: list[Callable[..., Any]] = [m for m in found if callable(m)]
        self._synchronous = not any(inspect.iscoroutinefunction(s) for s in self._scrubbers)
        self._config = config
        self._environ = environ
        self._key: bytes | None = None

    @classmethod
    def for_config(cls, config: FlujoConfig) -> Scrubbing:
        """The scrubbing of the policies ``config`` turns on (for commands that run outside a
        runner, e.g. ``flujo memory add``)."""
        plugins = config.plugin_manager
        if plugins is None:
            return cls([], config)
        policies = [
            plugins.registry.create("policies", name, config)
            for name in active_policy_names(config, plugins)
        ]
        return cls(policies, config)

    @property
    def active(self) -> bool:
        """Whether any policy scrubs (without one, :meth:`scrub` returns values unchanged)."""
        return bool(self._scrubbers)

    async def scrub(self, context: PipelineContext | None, value: Any) -> Any:
        """``value`` as it may be stored or handed to another plugin: its stored JSON form
        through every policy's ``scrub``. Without scrubbing policies, ``value`` itself."""
        if not self._scrubbers:
            return value
        context, value = _scrub_arguments(context, value)
        for scrub in self._scrubbers:
            value = await maybe_await(scrub(context, value))
        return value

    @property
    def synchronous(self) -> bool:
        """Whether every policy's ``scrub`` is a plain function, so :meth:`scrub_now` can run
        them outside a coroutine (the runner defers a snapshot's scrub only then)."""
        return self._synchronous

    def scrub_now(self, context: PipelineContext | None, value: Any) -> Any:
        """:meth:`scrub` without awaiting, for :attr:`synchronous` scrubbing. A ``scrub``
        that returns an awaitable all the same is an error here (never its input returned
        unscrubbed)."""
        if not self._scrubbers:
            return value
        context, value = _scrub_arguments(context, value)
        for scrub in self._scrubbers:
            value = scrub(context, value)
            if inspect.isawaitable(value):
                close = getattr(value, "close", None)
                if callable(close):
                    close()  # not awaited: say so quietly rather than warn "never awaited"
                raise TypeError(
                    f"{getattr(scrub, '__qualname__', scrub)!s} returned an awaitable where a "
                    "synchronous scrub was expected"
                )
        return value

    def fingerprint(self, text: str) -> str:
        """``fp:`` and the keyed hash of ``text`` (see the module's doc for the key)."""
        if self._key is None:
            self._key = _load_key(self._config, self._environ or os.environ)
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()
        return FINGERPRINT_PREFIX + digest[:32]

    async def key(
        self, context: PipelineContext | None, value: Any, *, field: str | None = None
    ) -> str:
        """A stable key for matching by ``value``: its text, or its fingerprint when a policy
        flags it (scrubbing would change it). With ``field``, the name of the ``context`` field
        ``value`` comes from, a resumed run's field still holding what was stored for a
        flagged value gets that value's key (see :data:`STORED_KEYS_FIELD`)."""
        text = _text(value)
        if not self._scrubbers:
            return text
        if field is not None and context is not None:
            held = context._stored_keys.get(field)
            if held is not None and held[0] == text:
                return held[1]
        scrubbed = await self.scrub(context, text)
        return text if scrubbed == text else self.fingerprint(text)

    def keys_of(
        self,
        raw: Mapping[str, Any],
        scrubbed: Mapping[str, Any],
        held: Mapping[str, tuple[str, str]] | None = None,
    ) -> dict[str, str]:
        """Keys of the scalar top-level fields of a context, from its stored form before
        (``raw``) and after (``scrubbed``) scrubbing: no policy is asked again. ``held`` is
        what the context was resumed with (``context._stored_keys``)."""
        keys: dict[str, str] = {}
        for name, value in raw.items():
            if not isinstance(value, str | int | float | bool):
                continue
            text = _text(value)
            if scrubbed.get(name) != value:
                keys[name] = self.fingerprint(text)
                continue
            kept = (held or {}).get(name)
            keys[name] = kept[1] if kept is not None and kept[0] == text else text
        return keys

    def with_keys(
        self, raw: Any, scrubbed: Any, held: Mapping[str, tuple[str, str]] | None = None
    ) -> Any:
        """``scrubbed`` (a context's stored form) with the keys of its flagged fields recorded
        under :data:`STORED_KEYS_FIELD`, so a resumed run keys them as this one did."""
        if not self._scrubbers or not isinstance(raw, dict) or not isinstance(scrubbed, dict):
            return scrubbed
        flagged = {
            name: [_text(scrubbed.get(name)), key]
            for name, key in self.keys_of(raw, scrubbed, held).items()
            if key.startswith(FINGERPRINT_PREFIX)
        }
        return {**scrubbed, STORED_KEYS_FIELD: flagged} if flagged else scrubbed


def split_stored_context(stored: Any) -> tuple[Any, dict[str, tuple[str, str]]]:
    """A stored context's fields, and the keys it recorded of its flagged fields (see
    :data:`STORED_KEYS_FIELD`; anything malformed there is ignored, never trusted as a key)."""
    if not isinstance(stored, dict) or STORED_KEYS_FIELD not in stored:
        return stored, {}
    fields = dict(stored)
    recorded = fields.pop(STORED_KEYS_FIELD)
    keys: dict[str, tuple[str, str]] = {}
    if isinstance(recorded, dict):
        for name, pair in recorded.items():
            if (
                isinstance(name, str)
                and isinstance(pair, list)
                and len(pair) == 2
                and all(isinstance(part, str) for part in pair)
                and pair[1].startswith(FINGERPRINT_PREFIX)
            ):
                keys[name] = (pair[0], pair[1])
    return fields, keys
