"""Reading a spec: files and URLs, JSON and YAML, external ``$ref``s bundled into one document.

:func:`load_spec` returns one self-contained document whose ``$ref``s are all local
(``#/...``). References to other files are bundled: a referenced *schema* becomes a named
schema of the document (``components/schemas`` or, for Swagger 2.0, ``definitions``),
anything else (a parameter, a response, ...) is inlined. Circular references between files
work because each external schema is added once, under one name, before its own references
are followed.

A spec is untrusted input and whatever a reference reads ends up in generated code, so a
reference may only name a regular file inside the root spec's folder (after resolving
symbolic links) or inside the ``refs_root`` the user names: no absolute path, no ``..`` out
of it, no scheme (``file:``), and no URL -- remote references are never fetched (a spec read
from a URL can only use references inside itself).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from flujo_openapi.errors import InvalidSpecError, RefResolutionError, SpecLoadError

__all__ = [
    "LoadedSpec",
    "escape_pointer",
    "fill_dangling",
    "is_data",
    "is_schema_map",
    "load_spec",
    "map_reference",
    "resolve_pointer",
]

# Keys whose value is a schema, and keys whose value maps names to schemas.
_SCHEMA_KEYS = frozenset(
    {
        "schema",
        "items",
        "additionalProperties",
        "not",
        "contains",
        "propertyNames",
        "if",
        "then",
        "else",
        "unevaluatedItems",
        "unevaluatedProperties",
        "additionalItems",
    }
)
_SCHEMA_LIST_KEYS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAP_KEYS = frozenset(
    {"properties", "patternProperties", "definitions", "$defs", "dependentSchemas"}
)
_SCHEMA_DATA_KEYS = frozenset({"default", "enum", "const"})
"""Keys of a schema whose value is data (a ``$ref`` key in it is data too, never a
reference). Elsewhere ``default`` is not data: it is the default response."""


def is_data(key: str, value: Any, in_schema: bool) -> bool:
    """Whether ``value`` under ``key`` is data rather than part of the description:
    examples, ``x-`` extensions, an Example Object's ``value``, a schema's default, enum or
    const."""
    if in_schema:
        return (
            key in _SCHEMA_DATA_KEYS
            or key == "example"
            or key.startswith("x-")
            or (key == "examples" and isinstance(value, list))
        )
    return key in ("example", "value") or key.startswith("x-")


def is_schema_map(key: str, value: Any) -> bool:
    """Whether ``value`` under ``key`` maps names to schemas (``properties``, ...): its keys
    are names -- a property may be called ``$ref`` -- unless the whole map is a reference
    (``properties: {$ref: 'attributes.yml#/droplet'}``, a string)."""
    return key in _SCHEMA_MAP_KEYS and isinstance(value, dict)


def map_reference(value: dict[str, Any]) -> str | None:
    """The reference when a name -> schema map is given as a ``$ref`` (a string; a property
    named ``$ref`` has a schema, an object, as its value)."""
    ref = value.get("$ref")
    return ref if isinstance(ref, str) else None


@dataclass
class LoadedSpec:
    """A spec read from ``source`` with every external reference bundled in."""

    document: dict[str, Any]
    """The bundled document (only local ``$ref``s)."""
    source: str
    """The path or URL it was read from."""
    raw: bytes
    """The bytes of the root file, as read."""
    files: dict[str, bytes] = field(default_factory=dict)
    """Every other file or URL read for external references: location -> bytes."""


def escape_pointer(token: str) -> str:
    """Escape one JSON pointer token (``~`` -> ``~0``, ``/`` -> ``~1``)."""
    return token.replace("~", "~0").replace("/", "~1")


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at JSON ``pointer`` (``"/a/b"`` or ``""``) in ``document``.

    :raises KeyError: nothing is there.
    """
    if pointer in ("", "/"):
        return document
    if not pointer.startswith("/"):
        raise KeyError(pointer)
    node = document
    for raw in pointer[1:].split("/"):
        token = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise KeyError(pointer)
    return node


_SCHEMA_CONTEXT = frozenset(
    {"schema", "items", "additionalProperties", "allOf", "anyOf", "oneOf", "not"}
)


def _dangles(document: dict[str, Any], ref: str) -> bool:
    try:
        resolve_pointer(document, ref[1:] if ref.startswith("#") else "\0")
    except KeyError:
        return True
    return False


def fill_dangling(document: dict[str, Any]) -> list[str]:
    """Absorb references to components that do not exist, outside ``paths`` (Intercom,
    Square, DocuSign and Keycloak publish some); returns one warning each.

    Inside a schema, the part that names a missing component is typed as *any value* (its
    other keys, such as ``description``, kept): the rest of the model, and every operation
    using it, is still right. A missing non-schema component (a response, a parameter) is
    left in place: an operation that uses it is skipped with the reason when planned.
    Walks like :func:`flujo_openapi.spec.validate` (data and property names are not
    references); changes ``document`` in place."""
    warnings: list[str] = []

    def walk(node: Any, pointer: str, in_schema: bool) -> Any:
        if isinstance(node, list):
            return [walk(v, f"{pointer}/{i}", in_schema) for i, v in enumerate(node)]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and _dangles(document, ref):
            if in_schema:
                warnings.append(f"{pointer}: $ref {ref!r} does not resolve: typed as any value")
                return {k: v for k, v in node.items() if k != "$ref"}
            warnings.append(
                f"{pointer}: $ref {ref!r} does not resolve: operations that use it are skipped"
            )
            return node
        for key, value in list(node.items()):
            child = f"{pointer}/{escape_pointer(str(key))}"
            if is_data(str(key), value, in_schema):
                continue
            components_schemas = key == "schemas" and pointer == "/components"
            if (is_schema_map(str(key), value) or components_schemas) and (
                isinstance(value, dict) and map_reference(value) is None
            ):
                for name, schema in list(value.items()):
                    value[name] = walk(schema, f"{child}/{escape_pointer(name)}", True)
                continue
            node[key] = walk(value, child, in_schema or key in _SCHEMA_CONTEXT)
        return node

    for key in list(document):
        if key not in ("paths", "webhooks") and not key.startswith("x-"):
            document[key] = walk(document[key], f"/{escape_pointer(key)}", False)
    return warnings


MAX_FILE_BYTES = 64 << 20
"""Largest file a ``$ref`` may read (Stripe's whole spec: about 6 MiB). A sparse file in an
archive costs nothing to ship and would otherwise be read to the end."""
MAX_DEPTH = 100
"""Deepest nesting a document may have (Stripe's spec: 23). Deeper is refused, not a
RecursionError somewhere later."""
MAX_NODES = 2_000_000
"""Most values a document may have once YAML aliases are expanded (Stripe's: about 80,000).
A YAML alias bomb is refused here, after a walk proportional to its *unexpanded* size."""


class _Normalizer:
    """One file's parsed data made plain JSON data, within the limits above.

    YAML (1.1, as PyYAML reads it) has values JSON has not: timestamps and dates (an
    unquoted ``example: 2020-07-28T18:00:00Z``), binary, sets, non-string keys (``200:``),
    non-finite floats. Each becomes the JSON value its text meant: an ISO 8601 string,
    base64 text, a list, a string key (as JSON would write it), a string. Lone surrogates
    (``"\\ud800"`` in JSON) become U+FFFD: they cannot be encoded, so no file could hold them.
    """

    def __init__(self, location: str) -> None:
        self.location = location
        self.done: dict[int, Any] = {}
        """id of a container -> its normalized copy (aliases stay shared: no expansion)."""
        self.sizes: dict[int, int] = {}
        """id of a container -> its expanded size."""
        self.active: set[int] = set()
        self.keep: list[Any] = []

    def fail(self, problem: str, pointer: str) -> SpecLoadError:
        shown = pointer if len(pointer) <= 120 else pointer[:117] + "..."
        return SpecLoadError(f"{self.location}: {problem} at {shown or '/'}")

    def grow(self, size: int, more: int, pointer: str) -> int:
        size += more
        if size > MAX_NODES:
            raise self.fail(
                f"more than {MAX_NODES:,} values once YAML aliases are expanded (an alias bomb?)",
                pointer,
            )
        return size

    def run(self, value: Any) -> Any:
        return self.value(value, 0, "")[0]

    def value(self, value: Any, depth: int, pointer: str) -> tuple[Any, int]:
        if isinstance(value, str):
            return (_clean_str(value), 1)
        if isinstance(value, bool) or value is None or isinstance(value, int):
            return (value, 1)
        if isinstance(value, float):
            return (value if math.isfinite(value) else repr(value), 1)
        if isinstance(value, (dict, list, tuple, set, frozenset)):
            return self.container(value, depth, pointer)
        return (_scalar_text(value), 1)

    def container(self, value: Any, depth: int, pointer: str) -> tuple[Any, int]:
        key = id(value)
        if key in self.done:
            return self.done[key], self.sizes[key]
        if key in self.active:
            raise self.fail("a YAML alias refers to a value that contains it", pointer)
        if depth >= MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels", pointer)
        self.active.add(key)
        size = 1
        out: Any
        if isinstance(value, dict):
            out = {}
            for raw_key, item in value.items():
                name = _key_text(raw_key)
                out[name], item_size = self.value(item, depth + 1, f"{pointer}/{name}")
                size = self.grow(size, item_size, pointer)
        else:
            items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
            out = []
            for index, item in enumerate(items):
                converted, item_size = self.value(item, depth + 1, f"{pointer}/{index}")
                out.append(converted)
                size = self.grow(size, item_size, pointer)
        self.active.discard(key)
        self.keep.append(value)  # ids stay valid while memoized
        self.done[key] = out
        self.sizes[key] = size
        return out, size


def _clean_str(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)
    return text


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return _clean_str(key)
    if isinstance(key, bool) or key is None:
        return json.dumps(key)
    if isinstance(key, (int, float)):
        return str(key) if not isinstance(key, float) or math.isfinite(key) else repr(key)
    return _scalar_text(key)


def _scalar_text(value: Any) -> str:
    """The JSON text of a YAML-only scalar (timestamp, date, binary...)."""
    import base64
    import datetime as dt

    if isinstance(value, dt.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return _clean_str(str(value))


def _is_url(location: str) -> bool:
    return urlsplit(location).scheme in ("http", "https")


def _parse(data: bytes, location: str) -> Any:
    """The JSON or YAML document in ``data``, as plain JSON data within the limits."""
    try:
        parsed = _parse_raw(data, location)
    except RecursionError:
        raise SpecLoadError(f"{location}: nested too deeply to read") from None
    return _Normalizer(location).run(parsed)


def _parse_raw(data: bytes, location: str) -> Any:
    text = data.decode("utf-8-sig", errors="replace")
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            if location.endswith(".json"):
                raise SpecLoadError(
                    f"{location}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
                ) from None
    import yaml  # type: ignore[import-untyped, unused-ignore]

    try:
        # The C loader when available (much faster on big specs), else the Python one,
        # with YAML 1.2 booleans (see _yaml_loader). Aliases are not expanded here (an alias
        # is the same object), so a bomb costs its own size; _Normalizer then refuses its
        # expansion.
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecLoadError(f"{location}: not valid JSON or YAML{where}: {problem}") from None


_LOADERS: list[Any] = []


def _yaml_loader() -> Any:
    """PyYAML's safe loader with YAML 1.2 scalars: only ``true``/``false`` are booleans and
    dates are strings.

    YAML 1.1 (PyYAML's default) also reads ``yes``, ``no``, ``on``, ``off``, ``y`` and ``n``
    as booleans, turning string enums such as ``[on, off]`` or the country code ``NO`` into
    ``True``/``False``; OpenAPI documents are YAML 1.2.
    """
    if not _LOADERS:
        import yaml

        # The C loader when available (much faster on big specs), else the Python one.
        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        bool_tag = "tag:yaml.org,2002:bool"
        # YAML 1.2 has no implicit timestamps either: an unquoted date stays the text
        # written (PyYAML's would fail on ``2023-02-30`` with a ValueError).
        dropped = {bool_tag, "tag:yaml.org,2002:timestamp"}
        resolvers = {
            first: [(tag, regexp) for tag, regexp in pairs if tag not in dropped]
            for first, pairs in base.yaml_implicit_resolvers.items()
        }
        loader: Any = type("OpenAPIYamlLoader", (base,), {"yaml_implicit_resolvers": resolvers})
        loader.add_implicit_resolver(
            bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
        )
        _LOADERS.append(loader)
    return _LOADERS[0]


def _read_confined(path: str) -> bytes:
    """The bytes of the regular file at ``path`` (already resolved and checked to be inside
    the allowed tree): the last component is not followed if it became a link since, and a
    FIFO or device is refused before anything blocks on it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SpecLoadError(f"no such file: {path}") from None
    except OSError as exc:
        raise SpecLoadError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SpecLoadError(f"{path} is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise SpecLoadError(
                f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB ({info.st_size:,} bytes)"
            )
        chunks = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > MAX_FILE_BYTES:  # it grew while being read
                raise SpecLoadError(f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise SpecLoadError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _fetch(location: str, timeout_s: float) -> bytes:
    if _is_url(location):
        import httpx

        try:
            response = httpx.get(location, timeout=timeout_s, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise SpecLoadError(f"cannot fetch {location}: {exc or type(exc).__name__}") from None
        if response.status_code != 200:
            raise SpecLoadError(f"cannot fetch {location}: HTTP {response.status_code}")
        return response.content
    path = Path(location)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SpecLoadError(f"no such file: {location}") from None
    except OSError as exc:
        raise SpecLoadError(f"cannot read {location}: {exc.strerror or exc}") from None


class _Bundler:
    def __init__(self, root: dict[str, Any], source: str, *, tree: Path | None):
        self.root = root
        self.source = source
        self.tree = tree
        """The folder references may read from (resolved); ``None`` for a spec read from a
        URL, which may only refer to itself."""
        self.docs: dict[str, Any] = {}
        self.raw: dict[str, bytes] = {}
        self.swagger2 = "swagger" in root
        self.hoisted: dict[tuple[str, str], str] = {}
        home = root.get("definitions") if self.swagger2 else root.get("components", {})
        if home is not None and not isinstance(home, dict):
            raise InvalidSpecError(
                "/definitions" if self.swagger2 else "/components", "must be an object"
            )
        existing = (home or {}) if self.swagger2 else (home or {}).get("schemas") or {}
        if not isinstance(existing, dict):
            raise InvalidSpecError("/components/schemas", "must be an object")
        self.existing: set[str] = set(existing)
        self.extra: dict[str, Any] = {}
        """Schemas bundled from other files, by the name they get in the document."""
        self.prefix = "#/definitions/" if self.swagger2 else "#/components/schemas/"
        self.maps_active: set[tuple[str, str]] = set()
        home_ref = map_reference(existing)
        if home_ref is not None:
            self._index_home(home_ref, "/definitions" if self.swagger2 else "/components/schemas")

    def _index_home(self, ref: str, pointer: str) -> None:
        """The document's schemas given as a ``$ref`` to an index file (Lichess:
        ``components: {schemas: {$ref: ./schemas/_index.yaml}}``): its names are taken, and an
        entry that is only a reference to another file gives that file's schema its name."""
        location, fragment = self._target(ref, self.source, pointer)
        index = self._resolve(ref, self.source, pointer, location, fragment)
        if not isinstance(index, dict):
            raise RefResolutionError(
                f"$ref {ref!r} at {pointer} (in {self.source}) must point to an object of schemas"
            )
        self.existing = set(index)
        for name, entry in index.items():
            target = self._index_target(entry, location, f"{location}#{fragment}/{name}")
            if target is not None:
                self.hoisted.setdefault(target, name)

    def _index_target(self, entry: Any, base: str, pointer: str) -> tuple[str, str] | None:
        """Where an index entry that is nothing but a reference to another file points."""
        if not isinstance(entry, dict) or set(entry) != {"$ref"}:
            return None
        ref = entry["$ref"]
        if not isinstance(ref, str) or ref.startswith("#"):
            return None
        return self._target(ref, base, pointer)

    def walk_home(self, value: dict[str, Any], base: str, pointer: str) -> dict[str, Any]:
        """The document's schemas given as a ``$ref`` to an index file (see _index_home)."""
        ref = map_reference(value)
        if ref is None:
            return {
                k: self.walk(v, base, True, f"{pointer}/{escape_pointer(k)}")
                for k, v in value.items()
            }
        location, fragment = self._target(ref, base, pointer)
        index = self._resolve(ref, base, pointer, location, fragment)
        assert isinstance(index, dict)  # checked by _index_home
        out: dict[str, Any] = {}
        for name, entry in index.items():
            where = f"{location}#{fragment}/{escape_pointer(name)}"
            target = self._index_target(entry, location, where)
            if target is not None and self.hoisted.get(target) == name:
                resolved = self._resolve(entry["$ref"], location, where, *target)
                out[name] = self.walk(
                    copy.deepcopy(resolved), target[0], True, f"{target[0]}#{target[1]}"
                )
            else:
                out[name] = self.walk(entry, location, True, where)
        siblings = {k: v for k, v in value.items() if k != "$ref"}
        out.update(self.walk_home(siblings, base, pointer))
        return out

    def _doc(self, location: str, referrer: str, pointer: str) -> Any:
        if location == self.source:
            return self.root
        if location not in self.docs:
            try:
                data = _read_confined(location)
            except SpecLoadError as exc:
                raise RefResolutionError(
                    f"unresolvable $ref at {pointer} (in {referrer}): {exc}"
                ) from None
            self.raw[location] = data
            self.docs[location] = _parse(data, location)
        return self.docs[location]

    def _target(self, ref: str, base: str, pointer: str) -> tuple[str, str]:
        """The file (resolved) and fragment ``ref`` names, checked to be a file references
        may read (see the module docs)."""
        file_part, _, fragment = ref.partition("#")
        if not file_part:
            return base, fragment

        def refuse(why: str) -> RefResolutionError:
            return RefResolutionError(f"$ref {ref!r} at {pointer or '/'} (in {base}): {why}")

        split = urlsplit(file_part)
        if _is_url(base) or split.scheme.lower() in ("http", "https"):
            return self._remote(ref, base, pointer, file_part)
        if split.scheme:
            raise refuse(
                f"scheme {split.scheme.lower()!r} is not followed: a reference may only name "
                "a file by a path relative to the file it appears in"
            )
        if split.netloc or file_part.startswith("//"):
            raise refuse("a reference naming a host is not followed")
        path = unquote(file_part)
        if "\x00" in path:
            raise refuse("a NUL character in a file name")
        if Path(path).is_absolute():
            raise refuse(
                "absolute paths are not followed: a reference may only name a file by a path "
                "relative to the file it appears in"
            )
        try:
            location = (Path(base).parent / path).resolve()
        except (OSError, RuntimeError, ValueError) as exc:
            raise refuse(f"cannot resolve the path ({exc})") from None
        assert self.tree is not None  # a local root always has a tree
        if not location.is_relative_to(self.tree):
            raise refuse(
                f"it points outside {self.tree}, the folder references may read from (links "
                "resolved); name a wider folder with --refs-root if you trust it"
            )
        return str(location), fragment

    def _remote(self, ref: str, base: str, pointer: str, file_part: str) -> tuple[str, str]:
        location = urljoin(base, file_part) if _is_url(base) else file_part
        if _is_url(base) and location.partition("#")[0] == base:
            return base, ref.partition("#")[2]  # the spec's own URL: a local reference
        raise RefResolutionError(
            f"remote $ref {ref!r} at {pointer or '/'} (in {base}): remote references are never "
            "fetched; download the files it needs next to the spec and refer to them by path"
        )

    def _name_for(self, location: str, fragment: str) -> str:
        stem = fragment.rstrip("/").rsplit("/", 1)[-1] if fragment.strip("/") else ""
        if not stem:
            stem = Path(urlsplit(location).path).stem
        base = re.sub(r"[^A-Za-z0-9_.]", "_", unquote(stem)) or "Schema"
        name, n = base, 2
        taken = self.existing | set(self.hoisted.values())
        while name in taken:
            name, n = f"{base}{n}", n + 1
        return name

    def walk(self, node: Any, base: str, in_schema: bool, pointer: str) -> Any:
        if isinstance(node, list):
            return [
                self.walk(item, base, in_schema, f"{pointer}/{i}") for i, item in enumerate(node)
            ]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            resolved = self._ref(ref, base, in_schema, pointer)
            if resolved is not None:
                if isinstance(resolved, dict) and "$ref" in resolved and len(node) > 1:
                    merged = {k: v for k, v in node.items() if k != "$ref"}
                    merged["$ref"] = resolved["$ref"]
                    return merged
                if len(node) > 1 and isinstance(resolved, dict):
                    siblings = {k: v for k, v in node.items() if k != "$ref"}
                    return {**resolved, **siblings}
                return resolved
        out: dict[str, Any] = {}
        for key, value in node.items():
            child = f"{pointer}/{escape_pointer(str(key))}"
            home = base == self.source and (
                (self.swagger2 and pointer == "" and key == "definitions")
                or (not self.swagger2 and pointer == "/components" and key == "schemas")
            )
            if is_data(key, value, in_schema):
                out[key] = value
            elif home and isinstance(value, dict):
                out[key] = self.walk_home(value, base, child)
            elif is_schema_map(key, value):
                out[key] = self.walk_map(value, base, child)
            elif key in _SCHEMA_KEYS or key in _SCHEMA_LIST_KEYS:
                out[key] = self.walk(value, base, True, child)
            elif key == "schemas" and pointer.endswith("/components") and isinstance(value, dict):
                # components of a file inlined whole (not the document's own)
                out[key] = {
                    k: self.walk(v, base, True, f"{child}/{escape_pointer(k)}")
                    for k, v in value.items()
                }
            else:
                out[key] = self.walk(value, base, in_schema, child)
        return out

    def _resolve(self, ref: str, base: str, pointer: str, location: str, fragment: str) -> Any:
        doc = self.root if location == self.source else self._doc(location, base, pointer)
        try:
            return resolve_pointer(doc, fragment)
        except KeyError:
            raise RefResolutionError(
                f"unresolvable $ref {ref!r} at {pointer} (in {base}): "
                f"{fragment or '/'} not found in {location}"
            ) from None

    def walk_map(self, value: dict[str, Any], base: str, pointer: str) -> dict[str, Any]:
        """A name -> schema map, each schema walked; a map given as a ``$ref`` (DigitalOcean)
        is read from its target, relative to the file that holds the target."""
        ref = map_reference(value)
        if ref is None:
            return {
                k: self.walk(v, base, True, f"{pointer}/{escape_pointer(k)}")
                for k, v in value.items()
            }
        location, fragment = self._target(ref, base, pointer)
        key = (location, fragment)
        if key in self.maps_active:
            raise RefResolutionError(f"circular $ref {ref!r} for a map of schemas at {pointer}")
        target = self._resolve(ref, base, pointer, location, fragment)
        if not isinstance(target, dict):
            raise RefResolutionError(
                f"$ref {ref!r} at {pointer} (in {base}) must point to an object of schemas"
            )
        self.maps_active.add(key)
        try:
            out = self.walk_map(target, location, f"{location}#{fragment}")
        finally:
            self.maps_active.discard(key)
        siblings = {k: v for k, v in value.items() if k != "$ref"}
        out.update(self.walk_map(siblings, base, pointer))
        return out

    def _ref(self, ref: str, base: str, in_schema: bool, pointer: str) -> Any:
        """The replacement for a ``$ref`` node, or ``None`` to keep a local root reference."""
        location, fragment = self._target(ref, base, pointer)
        if location == self.source:
            if base == self.source and ref.startswith("#"):
                return None
            return {"$ref": "#" + fragment}
        key = (location, fragment)
        target = self._resolve(ref, base, pointer, location, fragment)
        if in_schema:
            if key not in self.hoisted:
                name = self._name_for(location, fragment)
                self.hoisted[key] = name
                self.extra[name] = self.walk(
                    copy.deepcopy(target), location, True, f"{location}#{fragment}"
                )
            return {"$ref": self.prefix + escape_pointer(self.hoisted[key])}
        if key in self.hoisted:  # pragma: no cover - a non-schema reached again as a schema
            return {"$ref": self.prefix + escape_pointer(self.hoisted[key])}
        return self.walk(copy.deepcopy(target), location, False, f"{location}#{fragment}")


def load_spec(source: str, *, refs_root: str | None = None, timeout_s: float = 30.0) -> LoadedSpec:
    """Read the spec at ``source`` (a path or an http(s) URL) and bundle its references.

    ``refs_root``: the folder other files may be read from (default: the spec's own folder,
    links resolved); for a spec whose references reach a sibling folder (``../models/``).

    :raises SpecLoadError: the file or URL cannot be read or parsed.
    :raises RefResolutionError: an external ``$ref`` cannot be resolved, is remote, or names
        a file outside the allowed folder (see the module docs).
    :raises InvalidSpecError: the document is not a JSON/YAML object.
    """
    tree: Path | None = None
    if _is_url(source):
        location = source
    else:
        location = str(Path(source).resolve())
        tree = Path(refs_root).resolve() if refs_root else Path(location).parent
        if refs_root and not tree.is_dir():
            raise SpecLoadError(f"--refs-root {refs_root}: not a folder")
    raw = _fetch(location if _is_url(source) else source, timeout_s)
    document = _parse(raw, source)
    if not isinstance(document, dict):
        raise InvalidSpecError("", f"the document must be an object, not {type(document).__name__}")
    bundler = _Bundler(document, location, tree=tree)
    bundled = bundler.walk(document, location, False, "")
    if bundler.extra:
        if bundler.swagger2:
            bundled.setdefault("definitions", {}).update(bundler.extra)
        else:
            bundled.setdefault("components", {}).setdefault("schemas", {}).update(bundler.extra)
    return LoadedSpec(bundled, source, raw, dict(sorted(bundler.raw.items())))
