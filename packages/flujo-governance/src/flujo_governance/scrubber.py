"""Replacing PII inside any value, keeping its shape; the per-run pseudonym vault."""

from __future__ import annotations

import copy as copy_module
import dataclasses
import hashlib
import hmac
import re
import secrets
import threading
import types
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import pydantic_core
from pydantic import BaseModel

from flujo.plugin import decoded
from flujo_governance.engines.base import Finding, PIIEngine

__all__ = [
    "PLACEHOLDER",
    "Replacer",
    "Scrubber",
    "Vault",
    "VaultStore",
    "map_strings",
    "redact_placeholder",
]

Replacer = Callable[[str, str], str]
"""``replace(kind, value) -> placeholder``."""

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)_(\d+)>")
"""What pseudonyms look like: ``<EMAIL_1>``."""


def redact_placeholder(kind: str, value: str) -> str:
    """The ``redact`` mode's placeholder: the kind only, ``<EMAIL>``."""
    return f"<{kind}>"


class Vault:
    """Pseudonyms of one run: the same value always gets the same ``<KIND_n>``.

    Values are looked up by an HMAC (keyed with a per-process random key) of kind and value;
    the originals are kept only here, in memory, to restore the final output.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._by_digest: dict[bytes, str] = {}
        self._originals: dict[str, str] = {}
        self._counters: Counter[str] = Counter()
        self._lock = threading.Lock()

    def placeholder(self, kind: str, value: str) -> str:
        """The pseudonym of ``value`` (created on first sight)."""
        digest = hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()
        with self._lock:
            found = self._by_digest.get(digest)
            if found is None:
                self._counters[kind] += 1
                found = f"<{kind}_{self._counters[kind]}>"
                self._by_digest[digest] = found
                self._originals[found] = value
            return found

    def reserve(self, text: str) -> str:
        """Note the pseudonyms ``text`` already holds that this vault did not make (a resumed
        run's stored data, made by another process's vault), so new ones never reuse their
        numbers: ``<EMAIL_1>`` must not come to mean two addresses. Returns ``text``."""
        if "<" not in text:
            return text
        with self._lock:
            for match in PLACEHOLDER.finditer(text):
                if match.group(0) not in self._originals:
                    kind, number = match.group(1), int(match.group(2))
                    self._counters[kind] = max(self._counters[kind], number)
        return text

    def restore_text(self, text: str) -> str:
        """``text`` with every known pseudonym swapped back for its original value."""
        if "<" not in text:
            return text
        return PLACEHOLDER.sub(lambda m: self._originals.get(m.group(0), m.group(0)), text)

    def __len__(self) -> int:
        return len(self._originals)


class VaultStore:
    """Vaults by run id, in memory only; the oldest are dropped beyond ``max_runs``."""

    def __init__(self, max_runs: int = 1024) -> None:
        self._key = secrets.token_bytes(32)
        self._vaults: OrderedDict[str, Vault] = OrderedDict()
        self._max_runs = max_runs
        self._lock = threading.Lock()

    def get(self, run_id: str) -> Vault:
        """The vault of ``run_id`` (created when missing)."""
        with self._lock:
            vault = self._vaults.get(run_id)
            if vault is None:
                vault = self._vaults[run_id] = Vault(self._key)
                while len(self._vaults) > self._max_runs:
                    self._vaults.popitem(last=False)
            else:
                self._vaults.move_to_end(run_id)
            return vault

    def ephemeral(self) -> Vault:
        """A vault kept nowhere (for one call outside any run)."""
        return Vault(self._key)

    def peek(self, run_id: str) -> Vault | None:
        """The vault of ``run_id`` if there is one."""
        with self._lock:
            return self._vaults.get(run_id)

    def drop(self, run_id: str) -> None:
        """Forget ``run_id``'s originals. Idempotent."""
        with self._lock:
            self._vaults.pop(run_id, None)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._vaults


class Scrubber:
    """Finds PII with ``engine`` in every string inside a value and replaces it.

    Walks strings, bytes (UTF-8), integers (their decimal text: an ``int`` card number is a
    card number), mapping keys and values, lists, tuples (named tuples too), sets, dataclass
    instances (every field, ``init=False`` ones too), ``SimpleNamespace`` and pydantic models,
    returning a value of the same shape; any other object is scrubbed in its JSON form (what
    ``pydantic_core`` would serialize, its ``repr`` at worst) and replaced by that form when it
    held something. A value with nothing to replace is returned as is (the same object); an
    integer with something to replace becomes a string.
    """

    def __init__(self, engine: PIIEngine, kinds: frozenset[str] | None = None) -> None:
        self.engine = engine
        self.kinds = kinds
        """Kinds to replace (``None``: whatever the engine reports)."""

    def find(self, text: str) -> list[Finding]:
        """The findings in ``text`` this scrubber replaces."""
        found = self.engine.find(text)
        if self.kinds is None:
            return found
        return [f for f in found if f.kind in self.kinds]

    def text(self, text: str, replace: Replacer, counts: Counter[str] | None = None) -> str:
        """``text`` with each finding replaced by ``replace(kind, value)``.

        PII written another way (``jose%40example.com``, a base64 blob of an address, JSON's
        ``Jos\\u00e9``, fullwidth digits...) is found too: when ``text`` holds an encoding
        (:func:`flujo.plugin.decoded`), its decoded form is searched as well, and when that
        held PII, the decoded form, scrubbed, is what comes back (the original would carry
        the value encoded). The plain findings are replaced first, so a decoding that changes
        them (``+`` read as a space) cannot hide them; a text without encodings is scanned
        once, and one whose decoded form holds no PII comes back as it was.
        """
        scrubbed = self._replaced(text, replace, counts)
        plain = decoded(scrubbed)
        if plain == scrubbed:
            return scrubbed
        hidden = self._replaced(plain, replace, counts)
        return scrubbed if hidden is plain else hidden

    def _replaced(self, text: str, replace: Replacer, counts: Counter[str] | None) -> str:
        """``text`` with its findings replaced; ``text`` itself when there were none."""
        findings = self.find(text)
        if not findings:
            return text
        parts: list[str] = []
        last = 0
        for f in findings:
            parts.append(text[last : f.start])
            parts.append(replace(f.kind, text[f.start : f.end]))
            last = f.end
            if counts is not None:
                counts[f.kind] += 1
        parts.append(text[last:])
        return "".join(parts)

    def value(self, value: Any, replace: Replacer, counts: Counter[str] | None = None) -> Any:
        """``value`` with PII replaced in every string inside it, shape kept."""
        return _walk(value, lambda s: self.text(s, replace, counts))

    def contains(self, value: Any) -> Counter[str]:
        """Kinds and counts of the PII inside ``value`` (nothing is replaced)."""
        counts: Counter[str] = Counter()
        _walk(value, lambda s: self.text(s, redact_placeholder, counts))
        return counts


def map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """``value`` with ``fn`` applied to every string inside it (see :class:`Scrubber`)."""
    return _walk(value, fn)


def _distinct_keys(items: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Keys that became equal once scrubbed (two e-mails both ``<EMAIL>``) get a suffix, so
    no entry is lost: ``<EMAIL>``, ``<EMAIL>#2``."""
    seen: set[Any] = set()
    out = []
    for key, item in items:
        if key in seen and isinstance(key, str):
            n = 2
            while f"{key}#{n}" in seen:
                n += 1
            key = f"{key}#{n}"
        seen.add(key)
        out.append((key, item))
    return out


def _walk(value: Any, fn: Callable[[str], str], depth: int = 0) -> Any:
    if depth > 200:
        raise RecursionError("value nested too deeply to scrub")
    if isinstance(value, str):
        return fn(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        # Numbers below 7 digits cannot be a card, phone, SSN or account number.
        if -1_000_000 < value < 1_000_000:
            return value
        digits = str(value)
        new_digits = fn(digits)
        return value if new_digits == digits else new_digits
    if isinstance(value, bytes):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            return value
        new = fn(text)
        return value if new == text else new.encode("utf-8")
    if isinstance(value, BaseModel):
        updates = {}
        for name in type(value).model_fields:
            old = getattr(value, name, None)
            new = _walk(old, fn, depth + 1)
            if new is not old:
                updates[name] = new
        extra = value.__pydantic_extra__ or {}
        new_extra = {k: _walk(v, fn, depth + 1) for k, v in extra.items()}
        changed_extra = any(new_extra[k] is not extra[k] for k in extra)
        if not updates and not changed_extra:
            return value
        copy = value.model_copy(update=updates)
        if changed_extra and copy.__pydantic_extra__ is not None:
            copy.__pydantic_extra__.update(new_extra)
        return copy
    if isinstance(value, Mapping):
        items = [(_walk(k, fn, depth + 1), _walk(v, fn, depth + 1)) for k, v in value.items()]
        if all(nk is k and nv is v for (nk, nv), (k, v) in zip(items, value.items(), strict=True)):
            return value
        items = _distinct_keys(items)
        if type(value) is dict:
            return dict(items)
        try:
            return type(value)(items)  # type: ignore[call-arg]
        except TypeError:
            return dict(items)
    if isinstance(value, list | tuple | set | frozenset):
        new_items = [_walk(item, fn, depth + 1) for item in value]
        if all(n is o for n, o in zip(new_items, value, strict=True)):
            return value
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return type(value)(*new_items)
        try:
            return type(value)(new_items)
        except TypeError:
            return list(new_items)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for field in dataclasses.fields(value):
            old = getattr(value, field.name, None)
            new = _walk(old, fn, depth + 1)
            if new is not old:
                changes[field.name] = new
        if not changes:
            return value
        # A shallow copy with the fields set directly: ``dataclasses.replace`` cannot set
        # ``init=False`` fields, and would re-run ``__post_init__``; frozen classes too.
        clone = copy_module.copy(value)
        for name, new in changes.items():
            object.__setattr__(clone, name, new)
        return clone
    if isinstance(value, types.SimpleNamespace):
        attrs = vars(value)
        new_attrs = {k: _walk(v, fn, depth + 1) for k, v in attrs.items()}
        if all(new_attrs[k] is attrs[k] for k in attrs):
            return value
        return types.SimpleNamespace(**new_attrs)
    if isinstance(value, type):
        return value
    # Anything else leaves the process in its JSON form: scrub that (never fail open).
    try:
        form = pydantic_core.to_jsonable_python(value, serialize_unknown=True)
    except Exception:  # noqa: BLE001 - a value that cannot serialize is scrubbed as its repr
        form = repr(value)
    new_form = _walk(form, fn, depth + 1)
    return value if new_form is form else new_form
