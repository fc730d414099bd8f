"""What generated API packages run on: HTTP calls, credentials, tools, agents and steps.

A generated package describes each operation as an :class:`Endpoint` (method, path, where
each input field goes, body encoding, output and error types, security) and an
:class:`Operation` (the typed async function, its input model, its tool name and
description). This module turns those into HTTP requests (:class:`ApiClient`), pydantic-ai
tools whose errors come back to the model as data (:func:`operation_tool`), agents
(:func:`build_agent`) and pipeline steps (:func:`operation_step`).

Credentials and the base URL belong to the :class:`ApiClient`, built when a factory is
called: they are never tool arguments a model could fill.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import parse_qsl, quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from flujo.domain.errors import ConfigError, FlujoError, InputValidationError
from flujo.plugin import outgoing_headers

if TYPE_CHECKING:
    from pydantic_ai.models import Model
    from pydantic_ai.tools import Tool

    from flujo.agents import AsyncAgentWrapper
    from flujo.config import FlujoConfig
    from flujo.domain.context import PipelineContext
    from flujo.domain.models import Step

__all__ = [
    "ApiClient",
    "ApiConnectionError",
    "ApiError",
    "ApiErrorData",
    "ApiKey",
    "AuthArg",
    "BasicAuth",
    "BearerToken",
    "ClientCredentials",
    "Credential",
    "Endpoint",
    "Operation",
    "Param",
    "SecurityScheme",
    "build_agent",
    "make_client",
    "operation_step",
    "operation_tool",
]

Location = Literal["path", "query", "header", "cookie", "body", "form", "multipart"]
OutputKind = Literal["json", "text", "bytes", "none"]


# --------------------------------------------------------------------------- descriptions


@dataclass(frozen=True, slots=True)
class Param:
    """Where one field of an operation's input model goes on the wire."""

    location: Location
    """``path``, ``query``, ``header``, ``cookie``; ``body`` (the whole request body); or
    ``form``/``multipart`` (one field of a form-encoded or multipart body)."""
    wire_name: str
    """The name on the wire (the parameter or form field name)."""
    style: str = "form"
    """OpenAPI serialization style (``form``, ``simple``, ``deepObject``, ``pipeDelimited``,
    ``spaceDelimited``)."""
    explode: bool = True
    """OpenAPI ``explode``: repeat the key for each array item."""


@dataclass(frozen=True, slots=True)
class SecurityScheme:
    """A security scheme of the spec, and the environment variables that can fill it."""

    name: str
    kind: Literal["apiKey", "basic", "bearer", "oauth2", "unsupported"]
    param_name: str = ""
    """For ``apiKey``: the header, query parameter or cookie name."""
    location: Literal["header", "query", "cookie"] = "header"
    """For ``apiKey``: where the key goes."""
    token_url: str = ""
    """For ``oauth2``: the client-credentials token URL (empty: needs a :class:`BearerToken`)."""
    scopes: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    """Environment variables read when no credentials are passed: one (key or token) or two
    (username and password, or client id and secret)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How to call one operation over HTTP."""

    operation_id: str
    method: str
    path: str
    params: Mapping[str, Param]
    """Input field (by its alias, i.e. its JSON name) -> where it goes."""
    media_type: str | None = None
    """The request body's media type (``None``: no body)."""
    output_type: Any = None
    """The success body's type (``None`` when the operation returns nothing)."""
    output_kind: OutputKind = "none"
    errors: Mapping[str, Any] = field(default_factory=dict)
    """Documented error responses: ``"404"``, ``"4XX"`` or ``"default"`` -> body type."""
    security: tuple[tuple[str, ...], ...] = ()
    """Alternatives of scheme names; ``()`` in the list means anonymous access is allowed."""


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key for an ``apiKey`` scheme (header, query or cookie, as the spec says)."""

    value: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class BearerToken:
    """A token for an HTTP ``bearer`` scheme (or an already obtained OAuth2 access token)."""

    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """Username and password for an HTTP ``basic`` scheme."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """OAuth2 client credentials; the token is fetched (and cached) by the client."""

    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] | None = None
    """Scopes to request (``None``: every scope the spec lists for the scheme)."""
    token_url: str | None = None
    """Overrides the spec's token URL."""


Credential = ApiKey | BearerToken | BasicAuth | ClientCredentials
AuthArg = Credential | str | Mapping[str, "Credential | str"] | None
"""What ``auth=`` accepts: one credential (used for every scheme it fits), a plain string (an
API key or bearer token), a mapping of scheme name -> credential, or ``None`` (read the
environment variables the generated package names)."""


def _fits(scheme: SecurityScheme, credential: Credential | str) -> Credential | None:
    if isinstance(credential, str):
        if scheme.kind == "apiKey":
            return ApiKey(credential)
        if scheme.kind in ("bearer", "oauth2"):
            return BearerToken(credential)
        return None
    if scheme.kind == "apiKey" and isinstance(credential, ApiKey):
        return credential
    if scheme.kind == "basic" and isinstance(credential, BasicAuth):
        return credential
    if scheme.kind == "bearer" and isinstance(credential, BearerToken | ApiKey):
        return credential
    if scheme.kind == "oauth2" and isinstance(credential, BearerToken | ClientCredentials):
        return credential
    return None


def _credentials_from_env(schemes: Mapping[str, SecurityScheme]) -> dict[str, Credential]:
    found: dict[str, Credential] = {}
    for name, scheme in schemes.items():
        values = [os.environ.get(var) for var in scheme.env]
        if not scheme.env or not all(values):
            continue
        first = str(values[0])
        if scheme.kind == "apiKey":
            found[name] = ApiKey(first)
        elif scheme.kind == "bearer" or (scheme.kind == "oauth2" and len(values) == 1):
            found[name] = BearerToken(first)
        elif scheme.kind == "basic" and len(values) == 2:
            found[name] = BasicAuth(first, str(values[1]))
        elif scheme.kind == "oauth2" and len(values) == 2:
            found[name] = ClientCredentials(first, str(values[1]))
    return found


# --------------------------------------------------------------------------- errors


class ApiErrorData(BaseModel):
    """An API error as data: what a tool returns to the model instead of raising."""

    error: str
    """A one-line summary, e.g. ``"HTTP 404 from getPetById"``."""
    status: int | None = None
    """The HTTP status (``None`` when the API could not be reached)."""
    documented: bool = False
    """Whether the spec documents this error response."""
    body: Any = None
    """The error body: the documented error model's data, else the raw JSON or text."""


class ApiError(FlujoError):
    """The API answered with an error status (or a success body that does not validate).

    ``data`` is the body parsed as the documented error type for the status when the spec
    documents one (``documented`` is then ``True``), else the raw JSON or text.
    """

    def __init__(
        self, operation: str, status: int, data: Any, *, documented: bool, detail: str = ""
    ) -> None:
        shown = detail or _short(data)
        super().__init__(f"{operation}: HTTP {status}" + (f": {shown}" if shown else ""))
        self.operation = operation
        self.status = status
        self.data = data
        self.documented = documented

    def to_data(self) -> ApiErrorData:
        """This error as :class:`ApiErrorData` (what an agent's tool call returns)."""
        body = self.data.model_dump(mode="json") if isinstance(self.data, BaseModel) else self.data
        return ApiErrorData(
            error=f"HTTP {self.status} from {self.operation}",
            status=self.status,
            documented=self.documented,
            body=body,
        )


class ApiConnectionError(FlujoError):
    """The API could not be reached (connection refused, timeout, ...)."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation

    def to_data(self) -> ApiErrorData:
        """This error as :class:`ApiErrorData` (what an agent's tool call returns)."""
        return ApiErrorData(error=str(self))


def _short(data: Any) -> str:
    if isinstance(data, BaseModel):
        text = data.model_dump_json()
    elif isinstance(data, str):
        text = data
    else:
        try:
            text = json.dumps(data)
        except (TypeError, ValueError):
            text = repr(data)
    return text if len(text) <= 300 else text[:297] + "..."


# --------------------------------------------------------------------------- serialization


def _jsonable(value: Any) -> Any:
    """Plain JSON data for ``value`` (models by alias, without the fields nobody set)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    import pydantic_core

    return pydantic_core.to_jsonable_python(value)


def _scalar(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _query_pairs(param: Param, value: Any) -> list[tuple[str, str]]:
    name = param.wire_name
    if isinstance(value, list):
        if param.explode and param.style == "form":
            return [(name, _scalar(v)) for v in value]
        sep = {"spaceDelimited": " ", "pipeDelimited": "|"}.get(param.style, ",")
        return [(name, sep.join(_scalar(v) for v in value))]
    if isinstance(value, dict):
        if param.style == "deepObject":
            return [(f"{name}[{k}]", _scalar(v)) for k, v in value.items()]
        if param.explode:
            return [(str(k), _scalar(v)) for k, v in value.items()]
        return [(name, ",".join(f"{k},{_scalar(v)}" for k, v in value.items()))]
    return [(name, _scalar(value))]


def _simple(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(_scalar(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k},{_scalar(v)}" for k, v in value.items())
    return _scalar(value)


_FIELD_CACHE: dict[type[BaseModel], list[tuple[str, str]]] = {}


def _fields(model: type[BaseModel]) -> list[tuple[str, str]]:
    """``[(attribute name, alias)]`` of ``model``'s fields."""
    cached = _FIELD_CACHE.get(model)
    if cached is None:
        cached = [(name, info.alias or name) for name, info in model.model_fields.items()]
        _FIELD_CACHE[model] = cached
    return cached


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    json_body: Any = None
    has_json: bool = False
    content: bytes | str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)


def _build(endpoint: Endpoint, input: BaseModel) -> _Request:
    request = _Request(endpoint.method, endpoint.path)
    path = endpoint.path
    set_fields = input.model_fields_set
    for attr, alias in _fields(type(input)):
        param = endpoint.params.get(alias)
        value = getattr(input, attr)
        if param is None or (value is None and attr not in set_fields):
            continue
        if param.location == "body":
            if endpoint.media_type is not None and (
                "json" in endpoint.media_type or endpoint.media_type == "*/*"
            ):
                request.json_body, request.has_json = _jsonable(value), True
            elif isinstance(value, bytes | str):
                request.content = value
            else:
                request.json_body, request.has_json = _jsonable(value), True
            continue
        if param.location == "multipart" and isinstance(value, bytes):
            request.files[param.wire_name] = (param.wire_name, value)
            continue
        plain = _jsonable(value)
        if plain is None:
            continue
        if param.location == "path":
            path = path.replace("{" + param.wire_name + "}", quote(_simple(plain), safe=""))
        elif param.location == "query":
            request.params.extend(_query_pairs(param, plain))
        elif param.location == "header":
            request.headers[param.wire_name] = _simple(plain)
        elif param.location == "cookie":
            request.cookies[param.wire_name] = _simple(plain)
        elif isinstance(plain, list):
            request.data[param.wire_name] = [_scalar(v) for v in plain]
        else:
            request.data[param.wire_name] = _scalar(plain)
    if "?" in path:
        # A path key with a fixed query part (``/things?kind=a``): httpx would replace it
        # with the parameters, so it goes first among them.
        path, _, fixed = path.partition("?")
        request.params[:0] = parse_qsl(fixed, keep_blank_values=True)
    request.path = path
    return request


# --------------------------------------------------------------------------- the client


class ApiClient:
    """Calls endpoints of one API at ``base_url`` with the credentials it was built with.

    Give it an ``httpx.AsyncClient`` to reuse connections (and to choose timeouts, proxies or
    a transport); otherwise each call opens and closes its own.
    """

    def __init__(
        self,
        base_url: str,
        *,
        schemes: Mapping[str, SecurityScheme] | None = None,
        credentials: Mapping[str, Credential | str] | None = None,
        default_credential: Credential | str | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout_s: float = 30.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.schemes = dict(schemes or {})
        self._credentials = dict(credentials or {})
        self._default = default_credential
        self._http = http_client
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})
        self._tokens: dict[str, tuple[str, float]] = {}
        self._token_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"ApiClient(base_url={self.base_url!r}, schemes={sorted(self._credentials)!r})"

    def _credential(self, scheme: SecurityScheme) -> Credential | None:
        given = self._credentials.get(scheme.name)
        if given is not None:
            return _fits(scheme, given)
        if self._default is not None:
            return _fits(scheme, self._default)
        return None

    async def _apply_security(
        self, endpoint: Endpoint, request: _Request, http: httpx.AsyncClient
    ) -> None:
        for alternative in endpoint.security:
            found: list[tuple[SecurityScheme, Credential]] = []
            for name in alternative:
                scheme = self.schemes.get(name)
                credential = self._credential(scheme) if scheme is not None else None
                if scheme is None or credential is None:
                    break
                found.append((scheme, credential))
            else:
                for scheme, credential in found:
                    await self._apply(scheme, credential, request, http)
                return

    async def _apply(
        self,
        scheme: SecurityScheme,
        credential: Credential,
        request: _Request,
        http: httpx.AsyncClient,
    ) -> None:
        if isinstance(credential, ApiKey) and scheme.kind == "apiKey":
            if scheme.location == "query":
                request.params.append((scheme.param_name, credential.value))
            elif scheme.location == "cookie":
                request.cookies[scheme.param_name] = credential.value
            else:
                request.headers[scheme.param_name] = credential.value
        elif isinstance(credential, ApiKey | BearerToken):
            token = credential.value if isinstance(credential, ApiKey) else credential.token
            request.headers["Authorization"] = f"Bearer {token}"
        elif isinstance(credential, BasicAuth):
            pair = f"{credential.username}:{credential.password}".encode()
            request.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            token = await self._oauth_token(scheme, credential, http)
            request.headers["Authorization"] = f"Bearer {token}"

    async def _oauth_token(
        self, scheme: SecurityScheme, credential: ClientCredentials, http: httpx.AsyncClient
    ) -> str:
        async with self._token_lock:
            cached = self._tokens.get(scheme.name)
            if cached is not None and cached[1] > time.monotonic():
                return cached[0]
            url = credential.token_url or scheme.token_url
            if not url:
                raise ConfigError(f"security scheme {scheme.name!r} has no token URL")
            scopes = credential.scopes if credential.scopes is not None else scheme.scopes
            form = {"grant_type": "client_credentials"}
            if scopes:
                form["scope"] = " ".join(scopes)
            try:
                response = await http.post(
                    url,
                    data=form,
                    auth=httpx.BasicAuth(credential.client_id, credential.client_secret),
                )
            except httpx.HTTPError as exc:
                raise ApiConnectionError(scheme.name, f"token request failed: {exc}") from exc
            if response.status_code != 200:
                raise ApiError(
                    f"{scheme.name} token",
                    response.status_code,
                    _body(response),
                    documented=False,
                )
            try:
                payload = response.json()
                token = str(payload["access_token"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ApiError(
                    f"{scheme.name} token",
                    response.status_code,
                    response.text,
                    documented=False,
                    detail="no access_token in the token response",
                ) from exc
            expires = payload.get("expires_in")
            lifetime = float(expires) - 30 if isinstance(expires, int | float) else 300.0
            self._tokens[scheme.name] = (token, time.monotonic() + max(lifetime, 0.0))
            return token

    async def call(self, endpoint: Endpoint, input: BaseModel) -> Any:
        """Send ``input`` to ``endpoint`` and return the parsed success body.

        :raises ApiError: an error status (``data`` holds the documented error body) or a
            success body that does not validate as the output type.
        :raises ApiConnectionError: the API could not be reached.
        """
        if self._http is not None:
            return await self._call(endpoint, input, self._http)
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            return await self._call(endpoint, input, http)

    async def _call(self, endpoint: Endpoint, input: BaseModel, http: httpx.AsyncClient) -> Any:
        request = _build(endpoint, input)
        await self._apply_security(endpoint, request, http)
        # The calling step's trace context (W3C, from a tracing plugin through the core) goes
        # first: the client's own headers and the operation's win on a name.
        headers = {**outgoing_headers(), **self.headers, **request.headers}
        if request.cookies:
            cookie = "; ".join(f"{k}={v}" for k, v in request.cookies.items())
            headers["Cookie"] = cookie
        kwargs: dict[str, Any] = {}
        if request.has_json:
            kwargs["json"] = request.json_body
            media = endpoint.media_type or ""
            if media not in ("application/json", "") and "*" not in media and "json" in media:
                # A vendor JSON type (application/vnd.x+json): the server may insist on it.
                headers.setdefault("Content-Type", media)
        elif request.content is not None:
            kwargs["content"] = request.content
            if endpoint.media_type:
                headers.setdefault("Content-Type", endpoint.media_type)
        elif request.files:
            kwargs["files"] = request.files
            kwargs["data"] = request.data
        elif request.data or (endpoint.media_type and "form" in endpoint.media_type):
            if endpoint.media_type == "multipart/form-data":
                kwargs["files"] = {
                    k: (None, v if isinstance(v, str) else ",".join(v))
                    for k, v in request.data.items()
                }
            else:
                kwargs["data"] = request.data
        try:
            response = await http.request(
                endpoint.method,
                self.base_url + request.path,
                params=cast(Any, request.params) or None,
                headers=headers,
                **kwargs,
            )
        except httpx.HTTPError as exc:
            raise ApiConnectionError(
                endpoint.operation_id, f"request failed: {type(exc).__name__}: {exc}"
            ) from exc
        return _parse_response(endpoint, response)


_ADAPTERS: dict[int, TypeAdapter[Any]] = {}


def _adapter(tp: Any) -> TypeAdapter[Any]:
    key = id(tp)
    adapter = _ADAPTERS.get(key)
    if adapter is None:
        adapter = TypeAdapter(tp)
        _ADAPTERS[key] = adapter
    return adapter


def _body(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _error_type(endpoint: Endpoint, status: int) -> Any:
    code = str(status)
    for key in (code, f"{code[0]}XX", f"{code[0]}xx", "default"):
        if key in endpoint.errors:
            return endpoint.errors[key]
    return None


def _parse_response(endpoint: Endpoint, response: httpx.Response) -> Any:
    status = response.status_code
    if 200 <= status < 300:
        if endpoint.output_kind == "none":
            return None
        if endpoint.output_kind == "bytes":
            return response.content
        if endpoint.output_kind == "text":
            return response.text
        raw = _body(response)
        try:
            return _adapter(endpoint.output_type).validate_python(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise ApiError(
                endpoint.operation_id,
                status,
                raw,
                documented=False,
                detail=f"the response does not validate: {where}: {first['msg']}",
            ) from exc
    raw = _body(response)
    error_type = _error_type(endpoint, status)
    if error_type is not None and raw is not None:
        try:
            parsed = _adapter(error_type).validate_python(raw)
        except ValidationError:
            pass  # an error body that does not match its documentation: keep the raw data
        else:
            raise ApiError(endpoint.operation_id, status, parsed, documented=True)
    raise ApiError(endpoint.operation_id, status, raw, documented=error_type is not None)


def make_client(
    *,
    env_prefix: str,
    default_base_url: str | None,
    schemes: Mapping[str, SecurityScheme],
    base_url: str | None = None,
    auth: AuthArg = None,
    http_client: httpx.AsyncClient | None = None,
) -> ApiClient:
    """An :class:`ApiClient` from arguments, else ``<env_prefix>_BASE_URL`` and the schemes'
    environment variables, else the spec's first server.

    :raises ConfigError: no usable (absolute http/https) base URL.
    """
    url = base_url or os.environ.get(f"{env_prefix}_BASE_URL") or default_base_url
    if not url or not url.startswith(("http://", "https://")):
        shown = f" (the spec's server is {url!r})" if url else ""
        raise ConfigError(
            f"no base URL for this API{shown}: pass base_url=... or set {env_prefix}_BASE_URL"
        )
    credentials: Mapping[str, Credential | str]
    default: Credential | str | None = None
    if auth is None:
        credentials = _credentials_from_env(schemes)
    elif isinstance(auth, Mapping):
        unknown = sorted(set(auth) - set(schemes))
        if unknown:
            raise ConfigError(
                f"unknown security scheme(s) {unknown}; this API has {sorted(schemes)}"
            )
        credentials = dict(auth)
    else:
        credentials, default = {}, auth
    return ApiClient(
        url,
        schemes=schemes,
        credentials=credentials,
        default_credential=default,
        http_client=http_client,
    )


# --------------------------------------------------------------------------- operations


@dataclass(frozen=True, slots=True)
class Operation:
    """One generated operation: its tool name, typed function, input model and endpoint."""

    name: str
    """The tool name (at most 64 characters, unique in the package)."""
    function: Callable[..., Awaitable[Any]]
    """``async function(input, *, client=None) -> output``."""
    input_model: type[BaseModel]
    output_type: Any
    endpoint: Endpoint
    description: str
    """What the model reads to choose the tool: summary, description and notes."""
    tags: tuple[str, ...] = ()

    @property
    def method(self) -> str:
        """The HTTP method."""
        return self.endpoint.method

    @property
    def path(self) -> str:
        """The path template, e.g. ``/pets/{petId}``."""
        return self.endpoint.path

    @property
    def operation_id(self) -> str:
        """The spec's ``operationId`` (or the one derived from method and path)."""
        return self.endpoint.operation_id


def operation_tool(operation: Operation, client: ApiClient) -> Tool[Any]:
    """A pydantic-ai tool calling ``operation`` through ``client``.

    The tool's arguments are the input model's fields (the model sees no credentials or URL).
    API errors come back to the model as :class:`ApiErrorData`, so it can react to them.
    """
    from pydantic_ai.tools import Tool

    endpoint = operation.endpoint

    async def call(input: Any) -> Any:
        try:
            return await client.call(endpoint, input)
        except (ApiError, ApiConnectionError) as exc:
            return exc.to_data()

    call.__name__ = operation.name
    call.__doc__ = operation.description
    call.__annotations__ = {"input": operation.input_model, "return": Any}
    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "input", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=operation.input_model
            )
        ],
        return_annotation=Any,
    )
    return Tool(call, name=operation.name, description=operation.description, takes_ctx=False)


def _select(operations: Mapping[str, Operation], include: Iterable[str] | None) -> list[Operation]:
    if include is None:
        return list(operations.values())
    names = list(include)
    unknown = [n for n in names if n not in operations]
    if unknown:
        raise ConfigError(f"unknown operation(s) {unknown}; known: {sorted(operations)}")
    return [operations[n] for n in dict.fromkeys(names)]


def build_agent(
    operations: Mapping[str, Operation],
    client: ApiClient,
    model: Model | str,
    *,
    system_prompt: str,
    output_type: Any = str,
    include: Iterable[str] | None = None,
    name: str | None = None,
    retries: int = 1,
    timeout_s: float | None = None,
    config: FlujoConfig | None = None,
) -> AsyncAgentWrapper[Any]:
    """An agent (:func:`flujo.make_agent_async`) with the chosen operations as tools."""
    from flujo.agents import make_agent_async

    tools = [operation_tool(op, client) for op in _select(operations, include)]
    return make_agent_async(
        model,
        system_prompt,
        output_type,
        tools=tools,
        retries=retries,
        timeout_s=timeout_s,
        config=config,
        name=name,
    )


class _OperationAgent:
    """Runs one operation as a step's agent: no LLM, the step input is the operation input."""

    def __init__(self, operation: Operation, client: ApiClient, fixed: Mapping[str, Any]):
        self.operation = operation
        self.client = client
        self.fixed = dict(fixed)
        self.input_type: Any = None if fixed else operation.input_model
        self.output_type: Any = operation.output_type

    async def run(self, data: Any, *, context: PipelineContext | None = None) -> Any:
        model = self.operation.input_model
        if isinstance(data, model) and not self.fixed:
            value: BaseModel = data
        else:
            raw: Any
            if isinstance(data, BaseModel):
                raw = data.model_dump(by_alias=True, exclude_unset=True)
            elif isinstance(data, str | bytes):
                try:
                    raw = json.loads(data) if data else {}
                except ValueError as exc:
                    raise InputValidationError(
                        f"input to {self.operation.name!r} is not JSON: {exc}"
                    ) from exc
            elif data is None:
                raw = {}
            elif isinstance(data, Mapping):
                raw = dict(data)
            else:
                raise InputValidationError(
                    f"input to {self.operation.name!r} must be a {model.__name__}, a mapping or "
                    f"JSON, not {type(data).__name__}"
                )
            raw.update(self.fixed)
            try:
                value = model.model_validate(raw)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in first["loc"]) or "input"
                raise InputValidationError(
                    f"input to {self.operation.name!r} does not validate as {model.__name__}: "
                    f"{where}: {first['msg']}"
                ) from exc
        return await self.client.call(self.operation.endpoint, value)


def _aliases(model: type[BaseModel], values: Mapping[str, Any]) -> dict[str, Any]:
    by_attr = dict(_fields(model))
    known = set(by_attr) | set(by_attr.values())
    unknown = sorted(k for k in values if k not in known)
    if unknown:
        raise ConfigError(
            f"{model.__name__} has no field(s) {unknown}; fields: {sorted(by_attr.values())}"
        )
    return {by_attr.get(k, k): v for k, v in values.items()}


def operation_step(
    operation: Operation,
    client_factory: Callable[..., ApiClient],
    bind: Mapping[str, Any],
    *,
    connection_keys: Sequence[str] = ("base_url", "auth", "http_client"),
) -> Step:
    """``operation`` as a pipeline step with its output type; no LLM involved.

    ``bind`` holds connection settings (``base_url``, ``auth``, ``http_client``), passed to
    ``client_factory``, and fixed input fields (by attribute name or JSON name) merged into
    every input. The step's input is the input model (or, with fixed fields, a mapping or
    JSON of the remaining fields).
    """
    from flujo.domain.models import Step

    connection = {k: v for k, v in bind.items() if k in connection_keys}
    fixed = _aliases(operation.input_model, {k: v for k, v in bind.items() if k not in connection})
    agent = _OperationAgent(operation, client_factory(**connection), fixed)
    return Step(
        operation.name,
        agent,
        input_type=agent.input_type,
        output_type=operation.output_type,
    )
