"""Defaults that do not fit their schema are dropped, each with a reported reason.

A spec can say ``{type: string, format: uuid, default: "notauuid"}`` or give an enum a
default that is not one of its values. Emitted as is, the model fails ``mypy --strict`` (a
``str`` default on an enum field) or its first instantiation. :func:`drop_invalid_defaults`
removes such a ``default`` from the schemas given to datamodel-code-generator and returns
one message per default dropped. It only drops what is certainly invalid; anything it
cannot judge (a format it does not know, a schema without a type) is kept.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from flujo_openapi.loader import escape_pointer, is_data, is_schema_map, resolve_pointer

__all__ = ["drop_discriminators", "drop_invalid_defaults"]


def _parses(parse: Callable[[str], object]) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        try:
            parse(value)
        except ValueError:
            return False
        return True

    return check


def _datetime(text: str) -> object:
    return dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)


_FORMATS: dict[str, Callable[[Any], bool]] = {
    "uuid": _parses(uuid.UUID),
    "date-time": _parses(_datetime),
    "date": _parses(dt.date.fromisoformat),
    "ipv4": _parses(ipaddress.IPv4Address),
    "ipv6": _parses(ipaddress.IPv6Address),
}
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def _target(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """The schema a ``$ref`` (or an ``allOf`` of one ``$ref``) beside ``default`` means."""
    seen: set[str] = set()
    while True:
        ref = schema.get("$ref")
        all_of = schema.get("allOf")
        if not isinstance(ref, str) and isinstance(all_of, list) and len(all_of) == 1:
            only = all_of[0]
            ref = only.get("$ref") if isinstance(only, dict) else None
        if not isinstance(ref, str) or not ref.startswith("#") or ref in seen:
            return schema
        seen.add(ref)
        try:
            target = resolve_pointer(document, ref[1:])
        except KeyError:
            return schema
        if not isinstance(target, dict):
            return schema
        schema = target


def _admits_null(schema: dict[str, Any], document: dict[str, Any], depth: int = 0) -> bool:
    """Whether ``null`` may fit ``schema``: ``False`` only when it certainly does not."""
    target = _target(schema, document)
    if depth > 20 or target.get("nullable") is True or "null" in (target.get("enum") or [None]):
        return True
    kinds = target.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if isinstance(kinds, list) and kinds and "null" not in kinds:
        return False
    for key in ("oneOf", "anyOf"):
        members = target.get(key)
        if (
            isinstance(members, list)
            and members
            and not any(
                isinstance(m, dict) and _admits_null(m, document, depth + 1) for m in members
            )
        ):
            return False
    return True


def _problem(default: Any, schema: dict[str, Any], document: dict[str, Any]) -> str | None:
    """Why ``default`` does not fit ``schema``, or ``None``."""
    if default is None:
        # datamodel-code-generator writes ``= None`` where the schema says the value is never
        # null (``{default: null, oneOf: [string, array]}`` -> ``root: list[str] = None``).
        return None if _admits_null(schema, document) else "the schema does not admit null"
    target = _target(schema, document)
    enum = target.get("enum")
    if isinstance(enum, list) and enum and default not in enum:
        return "not one of the enum values"
    kinds = target.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if isinstance(kinds, list) and kinds and all(isinstance(k, str) for k in kinds):
        checks = [_TYPES[k] for k in kinds if k in _TYPES]
        if checks and len(checks) == len(kinds) and not any(check(default) for check in checks):
            return f"not of type {' or '.join(kinds)}"
        fmt = target.get("format")
        valid = _FORMATS.get(fmt) if isinstance(fmt, str) else None
        if valid is not None and isinstance(default, str) and not valid(default):
            return f"not a valid {fmt}"
    return None


def _schema_objects(document: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """Every schema object under ``components/schemas`` (nested ones too), with its pointer.

    The caller may change the object it is given before the walk goes on into it."""
    schemas = (document.get("components") or {}).get("schemas") or {}
    stack: list[tuple[Any, str]] = [
        (schema, f"/components/schemas/{escape_pointer(name)}") for name, schema in schemas.items()
    ]
    while stack:
        node, pointer = stack.pop()
        if isinstance(node, list):
            stack.extend((item, f"{pointer}/{i}") for i, item in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        yield node, pointer
        for key, value in node.items():
            child = f"{pointer}/{escape_pointer(str(key))}"
            if is_schema_map(str(key), value):
                stack.extend((v, f"{child}/{escape_pointer(k)}") for k, v in value.items())
            elif not is_data(str(key), value, True):
                stack.append((value, child))


def drop_invalid_defaults(document: dict[str, Any]) -> list[str]:
    """Remove from ``document``'s schemas every ``default`` that does not fit its schema;
    return a message for each (where, the value, why)."""
    dropped: list[str] = []
    for node, pointer in _schema_objects(document):
        if "default" in node:
            problem = _problem(node["default"], node, document)
            if problem is not None:
                shown = repr(node.pop("default"))
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                dropped.append(f"dropped the default {shown} at {pointer}: {problem}")
    return sorted(dropped)


def drop_discriminators(document: dict[str, Any]) -> None:
    """Remove every ``discriminator`` from ``document``'s schemas: its unions are then
    validated member by member (pydantic's smart mode), which accepts the same documents.

    datamodel-code-generator turns a discriminator into a ``Literal`` field on each member,
    narrowing the inherited property: with ``allOf`` inheritance that override is not a
    subtype of the base's field (``mypy --strict``: incompatible assignment), and when a
    mapping does not name a member (or names it by a reference into another file) the
    literal is the schema's *name*, so the model rejects every value the API really sends
    (DigitalOcean: ``type: Literal["droplet_action"]`` for ``"reboot"``)."""
    for node, _pointer in _schema_objects(document):
        if isinstance(node.get("discriminator"), dict):
            del node["discriminator"]
