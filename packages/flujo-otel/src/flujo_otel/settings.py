"""``[otel]`` in ``flujo.toml`` and the standard ``OTEL_*`` environment variables.

Precedence, key by key: a key set in ``[otel]`` wins; a key left out is taken from the
standard OpenTelemetry variable (the traces-specific one first, e.g.
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` before ``OTEL_EXPORTER_OTLP_ENDPOINT``); then the
default. This is the OpenTelemetry SDK's own rule (what code configures beats the
environment). One exception, because it is a kill switch: ``OTEL_SDK_DISABLED=true`` turns
tracing off whatever ``[otel]`` says.

Tracing is on when an endpoint is configured (in ``[otel]`` or the environment) and
``enabled`` is not ``false``; ``enabled = true`` without an endpoint exports to OTLP's default
``http://localhost:4318``. Installing the plugin alone exports nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field

from flujo.domain.errors import ConfigError

SECTION = "otel"
"""The ``flujo.toml`` section this plugin owns."""

Protocol = Literal["http/protobuf", "grpc"]
DEFAULT_HTTP_ENDPOINT = "http://localhost:4318"
DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
TRACES_PATH = "/v1/traces"
_RATIO_SAMPLERS = {"traceidratio", "parentbased_traceidratio"}
_ON_SAMPLERS = {"always_on", "parentbased_always_on"}
_OFF_SAMPLERS = {"always_off", "parentbased_always_off"}


class OtelSettings(BaseModel):
    """``[otel]``: where traces go and how many. Every key is optional (see the module)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = None
    """``false`` turns tracing off; unset: on when an endpoint is configured."""
    endpoint: str | None = None
    """The collector's base URL (``/v1/traces`` is appended for HTTP unless the URL already
    ends with it), or ``host:port`` / URL for gRPC. Env: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
    (used as is), ``OTEL_EXPORTER_OTLP_ENDPOINT`` (a base URL)."""
    protocol: Protocol | None = None
    """``"http/protobuf"`` (default) or ``"grpc"`` (needs ``flujo-otel[grpc]``). Env:
    ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``, ``OTEL_EXPORTER_OTLP_PROTOCOL``."""
    headers: dict[str, str] | None = None
    """Sent with every export (API keys). Env: ``OTEL_EXPORTER_OTLP_TRACES_HEADERS``,
    ``OTEL_EXPORTER_OTLP_HEADERS`` (``k1=v1,k2=v2``, URL-encoded values)."""
    service_name: str | None = None
    """The ``service.name`` resource attribute. Env: ``OTEL_SERVICE_NAME``; default
    ``"flujo"``. ``OTEL_RESOURCE_ATTRIBUTES`` adds further resource attributes."""
    sample_ratio: float | None = Field(default=None, ge=0.0, le=1.0)
    """Fraction of runs traced, decided by trace id (a resumed run keeps its decision). Env:
    ``OTEL_TRACES_SAMPLER`` (``always_on``, ``always_off``, ``traceidratio``,
    ``parentbased_*``) with ``OTEL_TRACES_SAMPLER_ARG``; default 1.0."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """The effective settings after ``[otel]``, the environment and the defaults."""

    enabled: bool
    endpoint: str
    protocol: Protocol
    headers: dict[str, str]
    service_name: str
    sample_ratio: float


def _first(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


def _parse_headers(name: str, text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{name}: expected key=value pairs separated by commas")
        headers[unquote(key.strip())] = unquote(value.strip())
    return headers


def _http_traces_url(base: str) -> str:
    trimmed = base.rstrip("/")
    return trimmed if trimmed.endswith(TRACES_PATH) else trimmed + TRACES_PATH


def _sample_ratio(environ: Mapping[str, str]) -> float | None:
    found = _first(environ, "OTEL_TRACES_SAMPLER")
    if found is None:
        return None
    sampler = found[1].lower()
    if sampler in _ON_SAMPLERS:
        return 1.0
    if sampler in _OFF_SAMPLERS:
        return 0.0
    if sampler not in _RATIO_SAMPLERS:
        raise ConfigError(
            f"OTEL_TRACES_SAMPLER={found[1]!r} is not supported by flujo-otel "
            f"(use one of {', '.join(sorted(_ON_SAMPLERS | _OFF_SAMPLERS | _RATIO_SAMPLERS))})"
        )
    arg = _first(environ, "OTEL_TRACES_SAMPLER_ARG")
    if arg is None:
        return 1.0
    try:
        ratio = float(arg[1])
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG={arg[1]!r}: expected a number from 0 to 1")
    return ratio


def resolve(settings: OtelSettings, environ: Mapping[str, str]) -> Resolved:
    """``settings`` completed from ``environ`` (see the module for the precedence)."""
    disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    protocol: str | None = settings.protocol
    if protocol is None:
        found = _first(environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
        protocol = found[1] if found else "http/protobuf"
        if protocol not in ("http/protobuf", "grpc"):
            raise ConfigError(
                f"{found[0] if found else 'protocol'}={protocol!r}: flujo-otel exports "
                "'http/protobuf' or 'grpc'"
            )
    endpoint: str | None
    if settings.endpoint is not None:
        endpoint = _http_traces_url(settings.endpoint) if protocol != "grpc" else settings.endpoint
    else:
        traces = _first(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        base = _first(environ, "OTEL_EXPORTER_OTLP_ENDPOINT")
        if traces is not None:
            endpoint = traces[1]  # the spec: used as is
        elif base is not None:
            endpoint = _http_traces_url(base[1]) if protocol != "grpc" else base[1]
        else:
            endpoint = None
    configured = endpoint is not None
    if endpoint is None:
        endpoint = (
            DEFAULT_GRPC_ENDPOINT if protocol == "grpc" else _http_traces_url(DEFAULT_HTTP_ENDPOINT)
        )
    headers = settings.headers
    if headers is None:
        found = _first(environ, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
        headers = _parse_headers(*found) if found else {}
    service = settings.service_name or _first(environ, "OTEL_SERVICE_NAME")
    service_name = service if isinstance(service, str) else service[1] if service else "flujo"
    ratio = settings.sample_ratio
    if ratio is None:
        ratio = _sample_ratio(environ)
    enabled = settings.enabled if settings.enabled is not None else configured
    return Resolved(
        enabled=enabled and not disabled,
        endpoint=endpoint,
        protocol="grpc" if protocol == "grpc" else "http/protobuf",
        headers=dict(headers),
        service_name=service_name,
        sample_ratio=1.0 if ratio is None else ratio,
    )
