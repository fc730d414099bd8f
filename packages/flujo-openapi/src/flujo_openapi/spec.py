"""Validating an OpenAPI 3.x document and planning its operations.

:func:`validate` checks the structure the generator relies on and names the JSON pointer of
the first problem. :func:`plan` turns every operation into an :class:`OperationPlan` (the
synthetic schemas of its input and output, where each input field goes) or a
:class:`Skipped` entry with the reason.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from flujo_openapi.errors import InvalidSpecError
from flujo_openapi.loader import (
    escape_pointer,
    is_data,
    is_schema_map,
    map_reference,
    resolve_pointer,
)
from flujo_openapi.naming import env_name, pascal, snake, tool_name, unique
from flujo_openapi.normalize import status_key

__all__ = [
    "IO_MODULE",
    "OperationPlan",
    "ParamPlan",
    "Plan",
    "SchemePlan",
    "Skipped",
    "plan",
    "validate",
]

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
IO_MODULE = "flujo_io"
"""The models module (``models/flujo_io.py``) holding the generated input and output models."""
_PARAM_LOCATIONS = ("path", "query", "header", "cookie")


class _Unsupported(Exception):
    """An operation uses something the generator cannot turn into code; it is skipped."""


# --------------------------------------------------------------------------- validation


def _expect(value: Any, kind: type | tuple[type, ...], pointer: str, what: str) -> None:
    if not isinstance(value, kind):
        raise InvalidSpecError(pointer, f"{what} must be {_kind(kind)}, not {_kind(type(value))}")


def _kind(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, "null" if kind is type(None) else kind.__name__)


def _check_refs(
    node: Any, document: dict[str, Any], pointer: str, bad: list[str], in_schema: bool = False
) -> None:
    """Check the references in ``node``: examples, defaults, enums and extensions are data
    (a ``$ref`` key there means nothing), and the keys of a ``properties`` map are names (a
    property may be called ``$ref``)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if "$ref" in node and not isinstance(ref, str):
            raise InvalidSpecError(f"{pointer}/$ref", "$ref must be a string")
        if isinstance(ref, str):
            try:
                resolve_pointer(document, ref[1:] if ref.startswith("#") else "\0")
            except KeyError:
                bad.append(f"{pointer}: $ref {ref!r} does not resolve")
        for key, value in node.items():
            child = f"{pointer}/{escape_pointer(str(key))}"
            if is_data(str(key), value, in_schema):
                continue
            components_schemas = key == "schemas" and pointer == "/components"
            if (is_schema_map(str(key), value) or components_schemas) and (
                isinstance(value, dict) and map_reference(value) is None
            ):
                for name, schema in value.items():
                    _check_refs(schema, document, f"{child}/{escape_pointer(name)}", bad, True)
                continue
            _check_refs(value, document, child, bad, in_schema or key in _SCHEMA_CONTEXT)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _check_refs(item, document, f"{pointer}/{index}", bad, in_schema)


_SCHEMA_CONTEXT = frozenset(
    {"schema", "items", "additionalProperties", "allOf", "anyOf", "oneOf", "not"}
)


def validate(document: dict[str, Any]) -> None:
    """Check the structure of an OpenAPI 3.x ``document``.

    Unresolvable ``$ref``s under ``paths`` and ``components`` are left for :func:`plan`
    (the operation that uses one is skipped); anywhere else they are errors.

    :raises InvalidSpecError: the first problem found, with its JSON pointer.
    """
    version = document.get("openapi")
    if not isinstance(version, str) or not re.match(r"^3\.[01]\.\d+", version):
        if "openapi" not in document:
            raise InvalidSpecError("", "not an OpenAPI document: no 'openapi' or 'swagger' field")
        raise InvalidSpecError("/openapi", f"unsupported OpenAPI version {version!r}")
    info = document.get("info")
    _expect(info, dict, "/info", "info")
    assert isinstance(info, dict)
    for key in ("title", "version"):
        if key not in info:
            raise InvalidSpecError("/info", f"missing required field {key!r}")
        _expect(info[key], str, f"/info/{key}", key)
    paths = document.get("paths", {})
    if "paths" not in document and not version.startswith("3.1"):
        raise InvalidSpecError("", "missing required field 'paths'")
    _expect(paths, dict, "/paths", "paths")
    for path, item in paths.items():
        where = f"/paths/{escape_pointer(str(path))}"
        if not str(path).startswith("/"):
            raise InvalidSpecError(where, "a path must start with '/'")
        _expect(item, dict, where, "a path item")
        for method in METHODS:
            if method not in item:
                continue
            op = item[method]
            op_where = f"{where}/{method}"
            _expect(op, dict, op_where, "an operation")
            if "responses" in op:
                _expect(op["responses"], dict, f"{op_where}/responses", "responses")
            elif version.startswith("3.0"):
                raise InvalidSpecError(op_where, "missing required field 'responses'")
            for owner, owner_where in ((item, where), (op, op_where)):
                params = owner.get("parameters", [])
                _expect(params, list, f"{owner_where}/parameters", "parameters")
                for index, param in enumerate(params):
                    p_where = f"{owner_where}/parameters/{index}"
                    _expect(param, dict, p_where, "a parameter")
                    if "$ref" in param:
                        continue
                    for key in ("name", "in"):
                        if key not in param:
                            raise InvalidSpecError(p_where, f"missing required field {key!r}")
                    if param["in"] not in _PARAM_LOCATIONS:
                        raise InvalidSpecError(
                            f"{p_where}/in",
                            f"'in' must be one of {', '.join(_PARAM_LOCATIONS)}, "
                            f"not {param['in']!r}",
                        )
    components = document.get("components", {})
    _expect(components, dict, "/components", "components")
    for section, value in components.items():
        if str(section).startswith("x-"):
            continue  # a vendor extension: any value
        _expect(value, dict, f"/components/{escape_pointer(section)}", section)
    for name, schema in components.get("schemas", {}).items():
        _expect(schema, (dict, bool), f"/components/schemas/{escape_pointer(name)}", "a schema")
    bad: list[str] = []
    for key, value in document.items():
        if key != "paths" and not str(key).startswith("x-"):  # an extension is data (Lob's)
            _check_refs(value, document, f"/{escape_pointer(key)}", bad)
    # A missing component named by another component: loader.fill_dangling warned about it
    # (and typed a schema's part as any value); an operation using it is skipped by plan.
    bad = [problem for problem in bad if not problem.startswith("/components/")]
    if bad:
        pointer, _, problem = bad[0].partition(": ")
        raise InvalidSpecError(pointer, problem)


# --------------------------------------------------------------------------- the plan


@dataclass
class ParamPlan:
    """One property of an operation's input model."""

    key: str
    """The property (JSON) name in the input model."""
    location: str
    wire_name: str
    style: str = "form"
    explode: bool = True


@dataclass
class SchemePlan:
    """A security scheme as the generated code describes it."""

    name: str
    kind: str
    param_name: str = ""
    location: str = "header"
    token_url: str = ""
    scopes: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    note: str = ""


@dataclass
class OperationPlan:
    """Everything needed to generate one operation."""

    name: str
    """The tool name."""
    function: str
    """The Python function name."""
    class_prefix: str
    operation_id: str
    method: str
    path: str
    summary: str
    description: str
    tags: tuple[str, ...]
    params: list[ParamPlan]
    media_type: str | None
    output_kind: str
    error_keys: list[str]
    """Status keys (``"404"``, ``"4XX"``, ``"default"``) with a typed error body."""
    security: tuple[tuple[str, ...], ...]
    deprecated: bool = False
    input_schema: dict[str, Any] = field(default_factory=dict)
    types_schema: dict[str, Any] = field(default_factory=dict)
    extra_schemas: dict[str, Any] = field(default_factory=dict)

    @property
    def input_class(self) -> str:
        """The class name of the input model."""
        return f"{self.class_prefix}Input"

    @property
    def types_class(self) -> str:
        """The class name of the model carrying the output and error types."""
        return f"{self.class_prefix}Types"


@dataclass
class Skipped:
    """An operation (or webhook, or callback) that was not generated, and why."""

    method: str
    path: str
    operation_id: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The manifest's JSON shape."""
        return {
            "method": self.method,
            "path": self.path,
            "operation_id": self.operation_id,
            "reason": self.reason,
        }


@dataclass
class Plan:
    """The operations to generate, those skipped or excluded, and the API-wide facts."""

    title: str
    description: str
    default_base_url: str | None
    operations: list[OperationPlan]
    skipped: list[Skipped]
    excluded: list[Skipped]
    schemes: dict[str, SchemePlan]
    tags: dict[str, list[str]]
    warnings: list[str] = field(default_factory=list)
    """What was invalid and ignored or repaired (a status code that is not one, a default
    that does not fit its schema...), one message each: reported, never silent."""


_STATUS_RE = re.compile(r"^([1-5]\d\d|[1-5]XX|default)$", re.IGNORECASE)
_JSON_RE = re.compile(r"^application/(.+\+)?json(;.*)?$|^\*/\*$|^application/\*$")


_SUCCESS_RE = re.compile(r"^2(\d\d|XX)$")


def _media_name(media: str) -> str:
    """``"Application/JSON; charset=utf-8"`` -> ``"application/json"``."""
    return str(media).split(";")[0].strip().lower()


def _is_json(media: str) -> bool:
    return bool(_JSON_RE.match(_media_name(media))) or _media_name(media) in _JSON_ALIASES


_JSON_ALIASES = frozenset({"text/json", "application/x-json", "text/x-json"})


def _json_rank(media: str) -> int:
    """How good a JSON media type is: exact JSON first, then ``+json`` types, then wildcards."""
    name = _media_name(media)
    if name == "application/json":
        return 0
    return 2 if "*" in name else 1


def _best_json(content: dict[str, Any]) -> str | None:
    """The key of ``content`` with the best JSON media type, if any (ties: the first)."""
    found = [m for m in content if _is_json(m)]
    return min(found, key=_json_rank) if found else None


def _is_text(media: str) -> bool:
    media = _media_name(media)
    return media.startswith("text/") or media.endswith(("/xml", "+xml", "/yaml", "/csv"))


def _is_binary(media: str) -> bool:
    """Neither JSON nor text: bytes (octet-stream, images, PDFs, archives, ...)."""
    return not _is_json(media) and not _is_text(media) and "form" not in media.lower()


class _Resolver:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def deref(self, node: Any, where: str) -> Any:
        seen: set[str] = set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen:
                raise _Unsupported(f"circular $ref {ref!r} at {where}")
            seen.add(ref)
            try:
                node = resolve_pointer(self.document, ref[1:] if ref.startswith("#") else "\0")
            except KeyError:
                raise _Unsupported(f"unresolvable $ref {ref!r} at {where}") from None
        return node

    def check_refs(self, node: Any, where: str) -> None:
        bad: list[str] = []
        _check_refs(node, self.document, where, bad)
        if bad:
            raise _Unsupported(bad[0].replace(": $ref", ": unresolvable $ref", 1))


def _server_url(document: dict[str, Any], source: str) -> str | None:
    servers = document.get("servers")
    if not isinstance(servers, list) or not servers:
        # No API-wide server: the one most path items name, if any.
        counts: dict[str, int] = {}
        for item in (document.get("paths") or {}).values():
            for server in (item.get("servers") or [])[:1] if isinstance(item, dict) else []:
                if isinstance(server, dict) and isinstance(server.get("url"), str):
                    counts[server["url"]] = counts.get(server["url"], 0) + 1
        if not counts:
            return None
        servers = [{"url": max(sorted(counts), key=lambda u: counts[u])}]
    server = servers[0]
    if not isinstance(server, dict) or not isinstance(server.get("url"), str):
        return None
    url: str = server["url"]
    for name, variable in (server.get("variables") or {}).items():
        if isinstance(variable, dict) and "default" in variable:
            url = url.replace("{" + name + "}", str(variable["default"]))
    if not url.startswith(("http://", "https://")) and source.startswith(("http://", "https://")):
        url = urljoin(source, url)
    return url.rstrip("/") or None


def _schemes(document: dict[str, Any], env_prefix: str) -> dict[str, SchemePlan]:
    out: dict[str, SchemePlan] = {}
    raw = (document.get("components") or {}).get("securitySchemes") or {}
    for name, scheme in sorted(raw.items()):
        if not isinstance(scheme, dict):
            continue
        base = f"{env_prefix}_{env_name(name)}"
        kind = scheme.get("type")
        if kind == "apiKey":
            location = scheme.get("in", "header")
            if location not in ("header", "query", "cookie"):
                location = "header"
            out[name] = SchemePlan(
                name, "apiKey", str(scheme.get("name", name)), location, env=(base,)
            )
        elif kind == "http" and str(scheme.get("scheme", "")).lower() == "basic":
            out[name] = SchemePlan(name, "basic", env=(f"{base}_USERNAME", f"{base}_PASSWORD"))
        elif kind == "http" and str(scheme.get("scheme", "")).lower() == "bearer":
            out[name] = SchemePlan(name, "bearer", env=(base,))
        elif kind == "oauth2":
            flows = scheme.get("flows") or {}
            cc = flows.get("clientCredentials") if isinstance(flows, dict) else None
            if isinstance(cc, dict) and cc.get("tokenUrl"):
                out[name] = SchemePlan(
                    name,
                    "oauth2",
                    token_url=str(cc["tokenUrl"]),
                    scopes=tuple(sorted(cc.get("scopes") or {})),
                    env=(f"{base}_CLIENT_ID", f"{base}_CLIENT_SECRET"),
                )
            else:
                out[name] = SchemePlan(
                    name,
                    "oauth2",
                    env=(f"{base}_TOKEN",),
                    note="no client-credentials flow: pass an access token (BearerToken)",
                )
        elif kind == "openIdConnect":
            out[name] = SchemePlan(
                name, "oauth2", env=(f"{base}_TOKEN",), note="pass an access token (BearerToken)"
            )
        else:
            out[name] = SchemePlan(
                name, "unsupported", note=f"security scheme type {kind!r} is not supported"
            )
    return out


def _description(op: dict[str, Any], method: str, path: str, limit: int = 1024) -> str:
    parts: list[str] = []
    for key in ("summary", "description"):
        text = op.get(key)
        if isinstance(text, str) and text.strip() and text.strip() not in parts:
            parts.append(text.strip())
    if op.get("deprecated"):
        parts.append("Deprecated.")
    text = "\n\n".join(parts) or f"{method.upper()} {path}"
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _with_description(schema: Any, description: Any) -> Any:
    if not isinstance(description, str) or not description.strip():
        return schema
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    out.setdefault("description", description.strip())
    return out


class _Planner:
    def __init__(
        self,
        document: dict[str, Any],
        schema_names: set[str],
        credential_params: set[tuple[str, str]],
    ) -> None:
        self.document = document
        self.credential_params = credential_params
        """(name, in) of apiKey schemes: credentials, never parameters a model fills."""
        self.resolver = _Resolver(document)
        self.schema_names = schema_names
        self.tool_names: set[str] = set()
        self.functions: set[str] = {"make_client", "make_agent", "make_operation_step"}
        self.classes: set[str] = set(schema_names)
        self.warnings: list[str] = []

    def operation(
        self,
        path: str,
        method: str,
        item: dict[str, Any],
        op: dict[str, Any],
        global_security: Any,
    ) -> OperationPlan:
        where = f"/paths/{escape_pointer(path)}/{method}"
        deref = self.resolver.deref
        operation_id = op.get("operationId") if isinstance(op.get("operationId"), str) else None
        # Parameters: path-level, overridden by operation-level ones with the same name and in.
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for owner, owner_where in ((item, f"/paths/{escape_pointer(path)}"), (op, where)):
            for index, raw in enumerate(owner.get("parameters") or []):
                param = deref(raw, f"{owner_where}/parameters/{index}")
                if not isinstance(param, dict) or "name" not in param or "in" not in param:
                    raise _Unsupported(f"parameter {index} has no 'name' or 'in'")
                merged[(str(param["name"]), str(param["in"]))] = param
        wire_path = _wire_path(path, [n for n, location in merged if location == "path"])
        for variable in _PATH_VARIABLE.findall(wire_path.partition("?")[0]):
            if (variable, "path") not in merged:
                # A template variable the spec forgot to declare: a required string.
                merged[(variable, "path")] = {
                    "name": variable,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                }
        properties: dict[str, Any] = {}
        required: list[str] = []
        params: list[ParamPlan] = []
        used: set[str] = set()
        wire_counts: dict[str, int] = {}
        for name, _location in merged:
            wire_counts[name] = wire_counts.get(name, 0) + 1
        for (name, location), param in merged.items():
            if location not in _PARAM_LOCATIONS:
                raise _Unsupported(f"parameter {name!r} in {location!r} is not supported")
            if location == "header" and name.lower() in ("accept", "content-type", "authorization"):
                continue  # OpenAPI says these are ignored as parameters
            if (name.lower(), location) in self.credential_params:
                continue  # the security scheme fills it, from bound credentials
            if "schema" in param:
                schema = param["schema"]
            elif isinstance(param.get("content"), dict) and param["content"]:
                best = _best_json(param["content"])
                body = param["content"][best] if best is not None else None
                # A non-JSON parameter content type: the value is sent as the text given.
                schema = body.get("schema", {}) if isinstance(body, dict) else {"type": "string"}
            else:
                schema = {}
            self.resolver.check_refs(schema, f"{where}/parameters")
            key = name if wire_counts[name] == 1 else f"{location}_{name}"
            key = unique(key, used, limit=10_000)
            properties[key] = _with_description(copy.deepcopy(schema), param.get("description"))
            if param.get("required") or location == "path":
                required.append(key)
            default_style = "simple" if location in ("path", "header") else "form"
            style = str(param.get("style", default_style))
            explode = bool(param.get("explode", style == "form"))
            params.append(ParamPlan(key, location, name, style, explode))
        # The request body.
        media_type: str | None = None
        body = op.get("requestBody")
        if body is not None:
            body = deref(body, f"{where}/requestBody")
            content = body.get("content") if isinstance(body, dict) else None
            if not isinstance(content, dict) or not content:
                raise _Unsupported("the request body has no content")
            media_key = _pick_media(content)
            media_type = _media_name(media_key)
            media = content[media_key] if isinstance(content[media_key], dict) else {}
            schema = media.get("schema", {})
            self.resolver.check_refs(schema, f"{where}/requestBody")
            body_required = bool(body.get("required", False))
            form = media_type in ("application/x-www-form-urlencoded", "multipart/form-data")
            resolved = deref(schema, f"{where}/requestBody") if form else None
            if form and isinstance(resolved, dict) and isinstance(resolved.get("properties"), dict):
                location = "multipart" if media_type == "multipart/form-data" else "form"
                inner_required = set(resolved.get("required") or [])
                for prop, prop_schema in resolved["properties"].items():
                    key = unique(prop if prop not in used else f"body_{prop}", used, limit=10_000)
                    properties[key] = copy.deepcopy(prop_schema)
                    # The schema's required fields are required even when the body is
                    # optional: an empty form is rarely meaningful, and the model must know.
                    if prop in inner_required:
                        required.append(key)
                    params.append(ParamPlan(key, location, str(prop)))
            else:
                if _is_binary(media_type):
                    schema = {"type": "string", "format": "binary"}
                elif _is_text(media_type):
                    schema = {"type": "string"}
                key = unique("body", used, limit=10_000)
                properties[key] = _with_description(copy.deepcopy(schema), body.get("description"))
                if body_required:
                    required.append(key)
                params.append(ParamPlan(key, "body", key))
        # Responses: the first documented 2xx is the output; 4xx/5xx/default are errors.
        raw_responses = op.get("responses")
        responses: dict[str, Any] = {}
        for raw_code, response in (
            raw_responses if isinstance(raw_responses, dict) else {}
        ).items():
            code = status_key(raw_code)
            if _STATUS_RE.match(code):
                responses[code] = response
            else:
                self.warnings.append(
                    f"{method.upper()} {path}: response {str(raw_code)!r} is not an HTTP status "
                    "code (100-599, 1XX-5XX or default); ignored"
                )
        success = sorted(c for c in responses if _SUCCESS_RE.match(c))
        if not success and "default" in responses:
            success = ["default"]  # OpenAPI: default describes every undocumented status
        types_props: dict[str, Any] = {}
        output_kind = "none"
        extra: dict[str, Any] = {}
        prefix = self._prefix(operation_id, method, path)
        if success:
            response = deref(responses[success[0]], f"{where}/responses/{success[0]}")
            content = response.get("content") if isinstance(response, dict) else None
            if isinstance(content, dict) and content:
                best = _best_json(content)
                if best is not None:
                    media = content[best] if isinstance(content[best], dict) else {}
                    schema = media.get("schema", {})
                    self.resolver.check_refs(schema, f"{where}/responses")
                    types_props["output"] = self._named(schema, f"{prefix}Response", extra)
                    output_kind = "json"
                elif any(_is_text(m) for m in content):
                    output_kind = "text"
                else:
                    output_kind = "bytes"
        error_keys: list[str] = []
        for code in sorted(str(c) for c in responses):
            if code.startswith(("2", "1", "3")):
                continue
            response = deref(responses[code], f"{where}/responses/{code}")
            content = response.get("content") if isinstance(response, dict) else None
            if not isinstance(content, dict):
                continue
            best = _best_json(content)
            if best is None or not isinstance(content[best], dict):
                continue
            schema = content[best].get("schema")
            if schema is None:
                continue
            self.resolver.check_refs(schema, f"{where}/responses")
            types_props[f"error_{code.lower()}"] = self._named(
                schema, f"{prefix}Error{code.upper()}", extra
            )
            error_keys.append(code)
        security_raw = op.get("security", global_security) or []
        security = tuple(tuple(sorted(req)) for req in security_raw if isinstance(req, dict))
        name = unique(tool_name(operation_id, method, path), self.tool_names)
        function = unique(snake(name, fallback="op"), self.functions, limit=10_000)
        input_schema: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
            "description": f"Input of {name}.",
        }
        if required:
            input_schema["required"] = required
        types_schema: dict[str, Any] = {
            "type": "object",
            "properties": types_props,
            "required": sorted(types_props),
        }
        tags = _tags(op)
        return OperationPlan(
            name=name,
            function=function,
            class_prefix=prefix,
            operation_id=operation_id or name,
            method=method.upper(),
            path=wire_path,
            summary=str(op.get("summary") or "").strip(),
            description=_description(op, method, path),
            tags=tags,
            params=params,
            media_type=media_type,
            output_kind=output_kind,
            error_keys=error_keys,
            security=security,
            deprecated=bool(op.get("deprecated")),
            input_schema=input_schema,
            types_schema=types_schema,
            extra_schemas=extra,
        )

    def _prefix(self, operation_id: str | None, method: str, path: str) -> str:
        base = pascal(tool_name(operation_id, method, path), fallback="Op")
        candidates = {f"{base}{suffix}" for suffix in ("Input", "Types", "Response")}
        n = 2
        prefix = base
        while candidates & self.classes:
            prefix = f"{base}{n}"
            candidates = {f"{prefix}{suffix}" for suffix in ("Input", "Types", "Response")}
            n += 1
        self.classes |= candidates
        return prefix

    def _named(self, schema: Any, name: str, extra: dict[str, Any]) -> Any:
        """A ``$ref`` to ``schema`` when it is an inline object (so its class gets ``name``)."""
        if (
            isinstance(schema, dict)
            and "$ref" not in schema
            and (schema.get("type") == "object" or "properties" in schema or "allOf" in schema)
        ):
            extra[name] = copy.deepcopy(schema)
            self.classes.add(name)
            return {"$ref": f"#/components/schemas/{IO_MODULE}.{name}"}
        return copy.deepcopy(schema) if schema is not None else {}


def _pick_media(content: dict[str, Any]) -> str:
    """The key of the (non-empty) ``content`` map to send: JSON (the best one), a form,
    plain text, other text (XML, CSV: sent as the string given), else binary (bytes)."""
    best = _best_json(content)
    if best is not None:
        return best
    for test in (
        lambda m: m == "application/x-www-form-urlencoded",
        lambda m: m == "multipart/form-data",
        lambda m: m == "text/plain",
        _is_text,
    ):
        for key in content:
            if test(_media_name(key)):
                return key
    return next(iter(content))


def _tags(op: dict[str, Any]) -> tuple[str, ...]:
    """An operation's tags (a single string counts as one tag; anything else as none)."""
    raw = op.get("tags")
    if isinstance(raw, str):
        return (raw,)
    return tuple(t for t in raw if isinstance(t, str)) if isinstance(raw, list) else ()


_PATH_VARIABLE = re.compile(r"{([^{}/]+)}")


def _wire_path(path: str, path_params: Sequence[str]) -> str:
    """The path to request for the path key ``path``.

    A ``#fragment`` is never sent (some specs use it only to tell operations apart); a
    ``?query`` part is kept (the runtime sends it before the parameters). A declared path
    parameter missing from the template is matched to an Express-style ``:name`` segment or
    to a variable spelled in another case (``{Id}`` for ``id``).
    """
    head, sep, query = path.split("#", 1)[0].partition("?")
    for name in path_params:
        if "{" + name + "}" in head:
            continue
        colon = re.sub(r"(?<=/):" + re.escape(name) + r"(?=/|$)", "{" + name + "}", head)
        if colon != head:
            head = colon
            continue
        for variable in _PATH_VARIABLE.findall(head):
            if variable.lower() == name.lower() and variable not in path_params:
                head = head.replace("{" + variable + "}", "{" + name + "}")
                break
    return (head or "/") + sep + query


def _matches(path: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, g) for g in globs)


def plan(
    document: dict[str, Any],
    *,
    source: str,
    env_prefix: str,
    include_tags: Sequence[str] = (),
    include_paths: Sequence[str] = (),
    exclude_operations: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> Plan:
    """Plan every operation of the (validated, 3.x) ``document``; see the module docs."""
    info = document.get("info") or {}
    schema_names = set((document.get("components") or {}).get("schemas") or {})
    schemes = _schemes(document, env_prefix)
    credential_params = {
        (scheme.param_name.lower(), scheme.location)
        for scheme in schemes.values()
        if scheme.kind == "apiKey"
    }
    planner = _Planner(document, schema_names, credential_params)
    operations: list[OperationPlan] = []
    skipped: list[Skipped] = []
    excluded: list[Skipped] = []
    tags: dict[str, list[str]] = {}
    global_security = document.get("security")
    resolver = _Resolver(document)
    items: list[tuple[str, str, dict[str, Any]]] = []
    for path, raw_item in (document.get("paths") or {}).items():
        try:
            item = resolver.deref(raw_item, f"/paths/{escape_pointer(str(path))}")
        except _Unsupported as exc:
            skipped.append(Skipped("*", str(path), None, str(exc)))
            continue
        if isinstance(item, dict):
            items.extend((str(path), method, item) for method in METHODS if method in item)
    for index, (path, method, item) in enumerate(items):
        if progress is not None:
            progress(index, len(items))
        op = item[method]
        operation_id = op.get("operationId") if isinstance(op.get("operationId"), str) else None
        op_tags = list(_tags(op))
        reason = None
        if include_tags and not set(op_tags) & set(include_tags):
            reason = "excluded by --include-tags"
        elif include_paths and not _matches(path, include_paths):
            reason = "excluded by --include-paths"
        elif exclude_operations and (
            operation_id in exclude_operations
            or tool_name(operation_id, method, path) in exclude_operations
        ):
            reason = "excluded by --exclude-operations"
        if reason is not None:
            excluded.append(Skipped(method.upper(), path, operation_id, reason))
            continue
        try:
            planned = planner.operation(path, method, item, op, global_security)
        except _Unsupported as exc:
            skipped.append(Skipped(method.upper(), path, operation_id, str(exc)))
            continue
        operations.append(planned)
        for tag in planned.tags:
            tags.setdefault(tag, []).append(planned.name)
        for callback_name in sorted(op.get("callbacks") or {}):
            skipped.append(
                Skipped(
                    "CALLBACK",
                    path,
                    operation_id,
                    f"callback {callback_name!r}: a request the API sends to you, not an "
                    "operation you call (the operation itself is generated)",
                )
            )
    if progress is not None:
        progress(len(items), len(items))
    for name, hook in sorted((document.get("webhooks") or {}).items()):
        for method in METHODS:
            if isinstance(hook, dict) and method in hook:
                op = hook[method]
                skipped.append(
                    Skipped(
                        method.upper(),
                        f"webhook:{name}",
                        op.get("operationId") if isinstance(op, dict) else None,
                        "webhook: a request the API sends to you, not an operation you call",
                    )
                )
    return Plan(
        title=str(info.get("title") or "API"),
        description=str(info.get("description") or "").strip(),
        default_base_url=_server_url(document, source),
        operations=operations,
        skipped=skipped,
        excluded=excluded,
        schemes=schemes,
        tags=tags,
        warnings=planner.warnings,
    )
