"""Swagger 2.0 -> OpenAPI 3.0 conversion (what the generator needs, nothing more).

Converts: ``host``/``basePath``/``schemes`` to ``servers``; ``definitions``, ``parameters``,
``responses`` and ``securityDefinitions`` to ``components``; ``body`` and ``formData``
parameters to ``requestBody`` (``consumes`` picks the media type; a ``file`` parameter means
``multipart/form-data``); ``collectionFormat`` to ``style``/``explode``; response ``schema`` to
``content`` by ``produces``; ``x-nullable`` to ``nullable``; ``type: file`` to binary strings.
"""

from __future__ import annotations

import copy
from typing import Any

from flujo_openapi.errors import InvalidSpecError
from flujo_openapi.loader import escape_pointer, resolve_pointer

__all__ = ["convert_swagger2"]

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PARAM_SCHEMA_KEYS = (
    "type",
    "format",
    "items",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "enum",
    "multipleOf",
)
_COLLECTION = {
    "csv": ("form", False),
    "ssv": ("spaceDelimited", False),
    "tsv": ("pipeDelimited", False),
    "pipes": ("pipeDelimited", False),
    "multi": ("form", True),
}


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            for old, new in (
                ("#/definitions/", "#/components/schemas/"),
                ("#/parameters/", "#/components/parameters/"),
                ("#/responses/", "#/components/responses/"),
            ):
                if value.startswith(old):
                    value = new + value[len(old) :]
            out[key] = value
        elif key == "x-nullable":
            out["nullable"] = value
        elif key == "type" and value == "file":
            out["type"] = "string"
            out["format"] = "binary"
        elif key == "discriminator" and isinstance(value, str):
            out[key] = {"propertyName": value}
        else:
            out[key] = _rewrite_refs(value)
    return out


def _items_schema(items: Any) -> Any:
    if not isinstance(items, dict):
        return items
    schema = {k: v for k, v in items.items() if k in (*_PARAM_SCHEMA_KEYS, "$ref")}
    if "items" in schema:
        schema["items"] = _items_schema(schema["items"])
    return schema


def _media(types: Any, default: str) -> list[str]:
    if isinstance(types, list) and types:
        return [str(t) for t in types]
    return [default]


def _convert_operation(
    op: dict[str, Any],
    path_params: list[Any],
    doc: dict[str, Any],
    pointer: str,
) -> dict[str, Any]:
    out = {
        k: v
        for k, v in op.items()
        if k not in ("parameters", "responses", "consumes", "produces", "schemes")
    }
    consumes = _media(op.get("consumes", doc.get("consumes")), "application/json")
    produces = _media(op.get("produces", doc.get("produces")), "application/json")
    merged: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
    op_params = op.get("parameters") or []
    for owner, given in ((pointer.rsplit("/", 1)[0], path_params), (pointer, op_params)):
        if not isinstance(given, list):
            raise InvalidSpecError(f"{owner}/parameters", "parameters must be an array")
    raw_params = [*path_params, *op_params]
    for index, param in enumerate(raw_params):
        where = f"{pointer}/parameters/{index}"
        if isinstance(param, dict) and isinstance(param.get("$ref"), str):
            ref = param["$ref"]
            try:
                param = resolve_pointer(doc, ref[1:]) if ref.startswith("#") else None
            except KeyError:
                raise InvalidSpecError(where, f"$ref {ref!r} does not resolve") from None
        if not isinstance(param, dict) or "in" not in param or "name" not in param:
            raise InvalidSpecError(where, "a parameter needs 'name' and 'in'")
        merged[(str(param["name"]), str(param["in"]))] = (param, where)
    params: list[dict[str, Any]] = []
    form: dict[str, Any] = {}
    form_required: list[str] = []
    has_file = False
    for (name, location), (param, _where) in merged.items():
        if location == "body":
            media = [m for m in consumes if "json" in m] or consumes
            schema = _rewrite_refs(param.get("schema", {}))
            out["requestBody"] = {
                "content": {m: {"schema": schema} for m in media},
                "required": bool(param.get("required", False)),
                **({"description": param["description"]} if "description" in param else {}),
            }
            continue
        schema = {k: copy.deepcopy(v) for k, v in param.items() if k in _PARAM_SCHEMA_KEYS}
        if "items" in schema:
            schema["items"] = _items_schema(schema["items"])
        schema = _rewrite_refs(schema)
        if location == "formData":
            if param.get("type") == "file":
                has_file = True
            if "description" in param:
                schema["description"] = param["description"]
            form[name] = schema
            if param.get("required"):
                form_required.append(name)
            continue
        new: dict[str, Any] = {
            "name": name,
            "in": location,
            "required": bool(param.get("required", location == "path")),
            "schema": schema,
        }
        if "description" in param:
            new["description"] = param["description"]
        fmt = param.get("collectionFormat")
        if param.get("type") == "array":
            style, explode = _COLLECTION.get(str(fmt or "csv"), ("form", False))
            if location in ("path", "header"):
                style = "simple"
            new["style"], new["explode"] = style, explode
        params.append(new)
    if form:
        media_type = (
            "multipart/form-data"
            if has_file or "multipart/form-data" in consumes
            else "application/x-www-form-urlencoded"
        )
        body_schema: dict[str, Any] = {"type": "object", "properties": form}
        if form_required:
            body_schema["required"] = form_required
        out["requestBody"] = {"content": {media_type: {"schema": body_schema}}}
    if params:
        out["parameters"] = params
    raw_responses = op.get("responses") or {}
    if not isinstance(raw_responses, dict):
        raise InvalidSpecError(f"{pointer}/responses", "responses must be an object")
    responses: dict[str, Any] = {}
    for code, response in raw_responses.items():
        if not isinstance(response, dict):
            responses[str(code)] = response
            continue
        if "$ref" in response:
            responses[str(code)] = _rewrite_refs(response)
            continue
        responses[str(code)] = _convert_response(response, produces)
    out["responses"] = responses
    converted: dict[str, Any] = _rewrite_refs(out)
    return converted


def _convert_response(response: dict[str, Any], produces: list[str]) -> dict[str, Any]:
    new: dict[str, Any] = {"description": response.get("description", "")}
    if "schema" in response:
        schema = _rewrite_refs(response["schema"])
        media = [m for m in produces if "json" in m] or produces
        new["content"] = {m: {"schema": schema} for m in media}
    if isinstance(response.get("headers"), dict):
        new["headers"] = {
            k: {"schema": _rewrite_refs({x: y for x, y in v.items() if x != "description"})}
            for k, v in response["headers"].items()
            if isinstance(v, dict)
        }
    return new


def _security_scheme(scheme: dict[str, Any]) -> dict[str, Any]:
    kind = scheme.get("type")
    described = {"description": scheme["description"]} if "description" in scheme else {}
    if kind == "basic":
        return {"type": "http", "scheme": "basic", **described}
    if kind == "apiKey":
        return {"type": "apiKey", "name": scheme.get("name"), "in": scheme.get("in"), **described}
    if kind == "oauth2":
        flow = {
            "implicit": "implicit",
            "password": "password",
            "application": "clientCredentials",
            "accessCode": "authorizationCode",
        }.get(str(scheme.get("flow")), "implicit")
        body: dict[str, Any] = {"scopes": scheme.get("scopes") or {}}
        if "authorizationUrl" in scheme:
            body["authorizationUrl"] = scheme["authorizationUrl"]
        if "tokenUrl" in scheme:
            body["tokenUrl"] = scheme["tokenUrl"]
        return {"type": "oauth2", "flows": {flow: body}, **described}
    return dict(scheme)


def convert_swagger2(doc: dict[str, Any]) -> dict[str, Any]:
    """Return the OpenAPI 3.0 equivalent of Swagger 2.0 document ``doc``.

    :raises InvalidSpecError: a structural problem (named by its JSON pointer) prevents it.
    """
    if str(doc.get("swagger")) != "2.0":
        raise InvalidSpecError("/swagger", f"unsupported Swagger version {doc.get('swagger')!r}")
    out: dict[str, Any] = {"openapi": "3.0.3", "info": doc.get("info", {})}
    host = doc.get("host")
    base_path = doc.get("basePath", "") or ""
    schemes = doc.get("schemes")
    if not isinstance(schemes, list) or not schemes or not isinstance(schemes[0], str):
        schemes = ["https"]
    if host:
        out["servers"] = [{"url": f"{schemes[0]}://{host}{base_path}".rstrip("/")}]
    elif base_path:
        out["servers"] = [{"url": base_path}]
    for key in ("tags", "externalDocs", "security"):
        if key in doc:
            out[key] = doc[key]
    paths = doc.get("paths", {})
    if not isinstance(paths, dict):
        raise InvalidSpecError("/paths", "must be an object")
    new_paths: dict[str, Any] = {}
    for path, item in paths.items():
        where = f"/paths/{escape_pointer(str(path))}"
        if not isinstance(item, dict):
            raise InvalidSpecError(where, "a path item must be an object")
        path_params = item.get("parameters") or []
        new_item: dict[str, Any] = {}
        for key, value in item.items():
            if key in _METHODS:
                if not isinstance(value, dict):
                    raise InvalidSpecError(f"{where}/{key}", "an operation must be an object")
                new_item[key] = _convert_operation(value, path_params, doc, f"{where}/{key}")
            elif key != "parameters":
                new_item[key] = value
        new_paths[str(path)] = new_item
    out["paths"] = new_paths
    components: dict[str, Any] = {}
    if isinstance(doc.get("definitions"), dict):
        components["schemas"] = _rewrite_refs(doc["definitions"])
    if isinstance(doc.get("responses"), dict):
        produces = _media(doc.get("produces"), "application/json")
        components["responses"] = {
            k: _convert_response(v, produces) if isinstance(v, dict) else v
            for k, v in doc["responses"].items()
        }
    if isinstance(doc.get("securityDefinitions"), dict):
        components["securitySchemes"] = {
            k: _security_scheme(v) if isinstance(v, dict) else v
            for k, v in doc["securityDefinitions"].items()
        }
    if components:
        out["components"] = components
    return out
