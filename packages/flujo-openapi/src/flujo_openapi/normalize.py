"""Absorbing what public API descriptions get wrong, before validation and planning.

Public descriptions are inconsistent in ways a generator used by real teams must accept
(issue #24). :func:`normalize` rewrites an OpenAPI 3.x document (Swagger 2.0 is converted
first) into the form the rest of the generator expects, without changing what the API does:

- response status keys: ``200`` (a YAML integer) -> ``"200"``, ``2xx`` -> ``"2XX"``;
- a path item given as ``null`` (an empty YAML key) is an empty path item; a path parameter
  without ``required: true`` is required (OpenAPI says it must be);
- schemas, wherever they are: type names in other spellings (``String``, ``int``,
  ``datetime``) mapped or dropped; ``items`` given as a list (JSON Schema draft 4 tuples)
  becomes ``anyOf``; a ``required: true`` flag on a property (not a list) is dropped; enum
  values of a ``type: string`` enum that YAML loaded as booleans or numbers become the strings
  they were written as, ``null`` in an enum becomes ``nullable``, and enums of objects or
  lists (no enum member can hold them) are dropped; ``exclusiveMinimum``/``Maximum`` in the
  other OpenAPI version's form are converted; non-numeric constraints are dropped; a
  ``pattern`` no regular-expression engine accepts is dropped;
- formats whose Python types need packages flujo-openapi does not install (``email`` ->
  ``EmailStr`` needs email-validator, ``ulid`` needs python-ulid) or would change what is
  sent (``password`` -> ``SecretStr``, serialized as ``**********``) become plain strings.

Unknown formats (``uint64``, ``base64url``, ``<width>x<height>``) are left alone:
datamodel-code-generator falls back to the base type for them.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from flujo_openapi.loader import _SCHEMA_KEYS, _SCHEMA_LIST_KEYS, _SCHEMA_MAP_KEYS

__all__ = ["DROPPED_FORMATS", "normalize", "status_key"]

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

DROPPED_FORMATS = frozenset({"email", "idn-email", "ulid", "password"})
"""Formats generated as plain ``str`` (see the module docs for why)."""

_TYPE_NAMES = {
    "string": "string",
    "str": "string",
    "text": "string",
    "integer": "integer",
    "int": "integer",
    "long": "integer",
    "int32": "integer",
    "int64": "integer",
    "number": "number",
    "float": "number",
    "double": "number",
    "decimal": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "object": "object",
    "dict": "object",
    "map": "object",
    "array": "array",
    "list": "array",
    "null": "null",
}
_TYPE_FORMATS = {"datetime": "date-time", "date-time": "date-time", "date": "date", "uuid": "uuid"}
_NUMERIC_KEYS = (
    "minimum",
    "maximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
)
_STATUS_RE = re.compile(r"^[1-5](\d\d|XX)$")


def status_key(code: Any) -> str:
    """A response key as a string: ``200`` -> ``"200"``, ``"2xx"`` -> ``"2XX"``."""
    text = str(code).strip()
    if text.lower() == "default":
        return "default"
    upper = text.upper()
    return upper if _STATUS_RE.match(upper) else text


def normalize(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of the OpenAPI 3.x ``document`` with the quirks above absorbed."""
    doc = copy.deepcopy(document)
    version = str(doc.get("openapi", "3.0"))
    paths = doc.get("paths")
    if isinstance(paths, dict):
        for key, item in list(paths.items()):
            if item is None:
                paths[key] = {}
            elif isinstance(item, dict):
                _path_item(item)
    hooks = doc.get("webhooks")
    if isinstance(hooks, dict):
        for item in hooks.values():
            if isinstance(item, dict):
                _path_item(item)
    _walk(doc, schema=False, v31=version.startswith("3.1"))
    return doc


def _path_item(item: dict[str, Any]) -> None:
    for owner in (item, *(item[m] for m in _METHODS if isinstance(item.get(m), dict))):
        params = owner.get("parameters")
        if isinstance(params, list):
            for param in params:
                if isinstance(param, dict) and param.get("in") == "path" and "$ref" not in param:
                    param["required"] = True
        responses = owner.get("responses") if owner is not item else None
        if isinstance(responses, dict):
            owner["responses"] = {status_key(k): v for k, v in responses.items()}


# Keys whose values are data (examples, defaults, extensions), never walked as structure.
_DATA_KEYS = frozenset({"example", "examples", "default", "enum", "const", "value"})


def _walk(node: Any, *, schema: bool, v31: bool) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, schema=schema, v31=v31)
        return
    if not isinstance(node, dict):
        return
    if schema:
        _fix_schema(node, v31)
        for key, value in node.items():
            if key in _SCHEMA_KEYS:
                _walk(value, schema=True, v31=v31)
            elif key in _SCHEMA_LIST_KEYS and isinstance(value, list):
                for item in value:
                    _walk(item, schema=True, v31=v31)
            elif key in _SCHEMA_MAP_KEYS and isinstance(value, dict):
                for item in value.values():
                    _walk(item, schema=True, v31=v31)
        return
    for key, value in node.items():
        if key in _DATA_KEYS or key.startswith("x-"):
            continue
        if key == "schema":
            _walk(value, schema=True, v31=v31)
        elif key == "schemas" and isinstance(value, dict):
            for item in value.values():
                _walk(item, schema=True, v31=v31)
        else:
            _walk(value, schema=False, v31=v31)


def _fix_schema(node: dict[str, Any], v31: bool) -> None:
    if "required" in node and not isinstance(node["required"], list):
        del node["required"]  # `required: true` on a property: a Swagger 1.x habit
    if "$ref" in node and isinstance(node["$ref"], str):
        return  # a reference: its target is fixed where it is defined
    _fix_type(node)
    items = node.get("items")
    if isinstance(items, list):
        # JSON Schema draft 4 tuple validation: each position its own schema.
        schemas = [i for i in items if isinstance(i, dict | bool)]
        node["items"] = schemas[0] if len(schemas) == 1 else {"anyOf": schemas} if schemas else {}
    if isinstance(node.get("required"), list):
        node["required"] = list(dict.fromkeys(r for r in node["required"] if isinstance(r, str)))
    for key in ("properties", "patternProperties"):
        if key in node and not isinstance(node[key], dict):
            del node[key]
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node and not isinstance(node[key], list):
            del node[key]
    _fix_numbers(node, v31)
    _fix_enum(node)
    _fix_format(node)
    _fix_pattern(node)


def _fix_type(node: dict[str, Any]) -> None:
    kind = node.get("type")
    if kind is None:
        return
    kinds = kind if isinstance(kind, list) else [kind]
    fixed: list[str] = []
    for one in kinds:
        if not isinstance(one, str):
            continue
        low = one.strip().lower()
        if low in _TYPE_NAMES:
            fixed.append(_TYPE_NAMES[low])
        elif low in _TYPE_FORMATS:
            fixed.append("string")
            node.setdefault("format", _TYPE_FORMATS[low])
    fixed = list(dict.fromkeys(fixed))
    if not fixed:
        del node["type"]  # nothing recognisable: any value
    elif isinstance(kind, list):
        node["type"] = fixed if len(fixed) > 1 else fixed[0]
    else:
        node["type"] = fixed[0]


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return int(number) if number.is_integer() else number
    return None


def _fix_numbers(node: dict[str, Any], v31: bool) -> None:
    for key in _NUMERIC_KEYS:
        if key in node:
            number = _number(node[key])
            if number is None:
                del node[key]
            else:
                node[key] = number
    for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if key not in node:
            continue
        value = node[key]
        if isinstance(value, bool):
            if v31:
                # 3.0's boolean form in a 3.1 document: the bound itself is exclusive.
                if value and bound in node:
                    node[key] = node.pop(bound)
                else:
                    del node[key]
        elif (number := _number(value)) is None:
            del node[key]
        elif not v31:
            # 3.1's numeric form in a 3.0 document.
            node[key] = True
            node[bound] = number


def _enum_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fix_enum(node: dict[str, Any]) -> None:
    if "enum" not in node:
        return
    values = node["enum"]
    if not isinstance(values, list):
        del node["enum"]
        return
    if any(isinstance(v, dict | list) for v in values):
        del node["enum"]  # no enum member can hold an object or a list
        return
    if None in values:
        values = [v for v in values if v is not None]
        node["nullable"] = True
    kind = node.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if kinds - {"null"} == {"string"}:
        values = [_enum_text(v) for v in values]
    elif kinds - {"null"} == {"integer"} or kinds - {"null"} == {"number"}:
        numbers = [_number(v) for v in values]
        if any(n is None for n in numbers):
            node.pop("type")  # the values are not what the type says: trust the values
        else:
            values = numbers
    elif kinds - {"null"} == {"boolean"} and not all(isinstance(v, bool) for v in values):
        node.pop("type")
    unique: list[Any] = []
    seen: set[tuple[type, Any]] = set()
    for value in values:
        marker = (type(value), value)
        if marker not in seen:
            seen.add(marker)
            unique.append(value)
    if unique:
        node["enum"] = unique
    else:
        del node["enum"]


def _fix_format(node: dict[str, Any]) -> None:
    fmt = node.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, str) or fmt.strip().lower() in DROPPED_FORMATS:
        del node["format"]


_PATTERNS: dict[str, bool] = {}


def _pattern_ok(pattern: str) -> bool:
    """Whether pydantic can compile ``pattern`` with one of its regular-expression engines."""
    known = _PATTERNS.get(pattern)
    if known is not None:
        return known
    from typing import Annotated

    from pydantic import Field, TypeAdapter
    from pydantic_core import SchemaError

    ok = False
    try:
        TypeAdapter(Annotated[str, Field(pattern=pattern)])
        ok = True
    except SchemaError:
        try:
            re.compile(pattern)
            ok = True
        except (re.error, RecursionError, OverflowError):
            ok = False
    _PATTERNS[pattern] = ok
    return ok


def _fix_pattern(node: dict[str, Any]) -> None:
    pattern = node.get("pattern")
    if pattern is None:
        return
    if not isinstance(pattern, str) or not _pattern_ok(pattern):
        del node["pattern"]
