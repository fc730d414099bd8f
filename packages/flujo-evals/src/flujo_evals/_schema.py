"""A small JSON Schema validator (the common subset of draft 2020-12), with no dependency.

Supported keywords: ``type``, ``enum``, ``const``, ``properties``, ``required``,
``additionalProperties``, ``items``, ``minItems``, ``maxItems``, ``minLength``, ``maxLength``,
``pattern``, ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``, ``anyOf``,
``oneOf``, ``allOf``, ``not``. Other keywords are ignored (as a validator may for annotations).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list, tuple),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    kinds = _TYPES.get(name)
    return kinds is not None and isinstance(value, kinds)


def check_schema(schema: Any) -> None:
    """Raise :class:`ValueError` when ``schema`` is not a JSON Schema object (or boolean)."""
    if not isinstance(schema, Mapping | bool):
        raise ValueError(f"a JSON Schema is an object, got {type(schema).__name__}")
    if isinstance(schema, Mapping):
        kinds = schema.get("type")
        names = [kinds] if isinstance(kinds, str) else kinds or []
        unknown = [n for n in names if n not in (*_TYPES, "integer", "number")]
        if unknown:
            raise ValueError(f"unknown type {unknown[0]!r}")
        if "pattern" in schema:
            re.compile(str(schema["pattern"]))


def errors(value: Any, schema: Any, where: str = "$") -> list[str]:
    """Every way ``value`` fails ``schema``, as ``"<path>: <problem>"`` (empty when valid)."""
    if schema is True:
        return []
    if schema is False:
        return [f"{where}: no value is allowed here"]
    if not isinstance(schema, Mapping):
        return []
    found: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        names = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_is_type(value, n) for n in names):
            return [f"{where}: expected {' or '.join(names)}, got {_json_type(value)}"]
    if "const" in schema and value != schema["const"]:
        found.append(f"{where}: expected {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} is not one of {schema['enum']!r}")
    if isinstance(value, dict):
        found += _object_errors(value, schema, where)
    if isinstance(value, list | tuple):
        found += _array_errors(list(value), schema, where)
    if isinstance(value, str):
        found += _string_errors(value, schema, where)
    if isinstance(value, int | float) and not isinstance(value, bool):
        found += _number_errors(value, schema, where)
    for sub in schema.get("allOf", ()):
        found += errors(value, sub, where)
    if "anyOf" in schema and not any(not errors(value, s, where) for s in schema["anyOf"]):
        found.append(f"{where}: matches none of anyOf")
    if "oneOf" in schema:
        matching = sum(1 for s in schema["oneOf"] if not errors(value, s, where))
        if matching != 1:
            found.append(f"{where}: matches {matching} of oneOf, expected exactly 1")
    if "not" in schema and not errors(value, schema["not"], where):
        found.append(f"{where}: must not match the 'not' schema")
    return found


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return name
    return type(value).__name__


def _object_errors(value: dict[str, Any], schema: Mapping[str, Any], where: str) -> list[str]:
    required = schema.get("required", ())
    found = [f"{where}: missing required {k!r}" for k in required if k not in value]
    props: Mapping[str, Any] = schema.get("properties", {})
    for key, sub in props.items():
        if key in value:
            found += errors(value[key], sub, f"{where}.{key}")
    extra = schema.get("additionalProperties", True)
    for key in value:
        if key not in props:
            if extra is False:
                found.append(f"{where}: unexpected property {key!r}")
            elif isinstance(extra, Mapping):
                found += errors(value[key], extra, f"{where}.{key}")
    return found


def _array_errors(value: list[Any], schema: Mapping[str, Any], where: str) -> list[str]:
    found: list[str] = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        found.append(f"{where}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        found.append(f"{where}: more than {schema['maxItems']} items")
    items = schema.get("items")
    if isinstance(items, Mapping | bool):
        for i, item in enumerate(value):
            found += errors(item, items, f"{where}[{i}]")
    return found


def _string_errors(value: str, schema: Mapping[str, Any], where: str) -> list[str]:
    found: list[str] = []
    if "minLength" in schema and len(value) < schema["minLength"]:
        found.append(f"{where}: shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        found.append(f"{where}: longer than {schema['maxLength']}")
    if "pattern" in schema and re.search(str(schema["pattern"]), value) is None:
        found.append(f"{where}: does not match {schema['pattern']!r}")
    return found


def _number_errors(value: float, schema: Mapping[str, Any], where: str) -> list[str]:
    found: list[str] = []
    if "minimum" in schema and value < schema["minimum"]:
        found.append(f"{where}: below the minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        found.append(f"{where}: above the maximum {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        found.append(f"{where}: not above {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        found.append(f"{where}: not below {schema['exclusiveMaximum']}")
    return found
