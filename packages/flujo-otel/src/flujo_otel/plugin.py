"""The hooks of flujo-otel (the module the ``flujo.plugins`` entry point names).

Imported at every flujo startup, so it imports nothing heavy: OpenTelemetry and the tracing
are imported in ``flujo_runtime_started``, and only when ``[otel]`` turns tracing on.

The hooks are methods of :class:`OtelPlugin`; this module exposes one instance's methods as
module functions. Tests (and embedders) register their own ``OtelPlugin(exporter=...)``
instead, to send spans somewhere else than OTLP (an in-memory exporter).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from flujo.plugin import hookimpl

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from pydantic import BaseModel

    from flujo.plugin import (
        FlujoConfig,
        Operation,
        PolicyDecided,
        RunFinalized,
        RunRecord,
        RunStarted,
        Runtime,
        RunViewSection,
        StepCompleted,
        StepStarted,
    )
    from flujo_otel.settings import Resolved
    from flujo_otel.tracing import Tracing

DISTRIBUTION = "flujo-otel"
"""The name Flujo knows this plugin by (its distribution's)."""
SERVICE = "otel"
"""The tracing's name in ``runtime.services`` (``runner.services["otel"]``)."""


def otlp_exporter(resolved: Resolved) -> SpanExporter:
    """The OTLP exporter ``resolved`` asks for."""
    from flujo.plugin import ConfigError

    if resolved.protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            raise ConfigError(
                '[otel] protocol = "grpc" needs the gRPC exporter: pip install "flujo-otel[grpc]"'
            ) from None
        return GrpcExporter(endpoint=resolved.endpoint, headers=resolved.headers or None)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=resolved.endpoint, headers=resolved.headers or None)


class OtelPlugin:
    """flujo-otel's hooks. ``exporter``: a factory of the exporter to use instead of OTLP."""

    def __init__(
        self,
        exporter: Callable[[Resolved], SpanExporter] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._exporter = exporter or otlp_exporter
        self._environ = environ

    @hookimpl
    def flujo_config_sections(self) -> dict[str, type[BaseModel]]:
        """Own ``[otel]``."""
        from flujo_otel.settings import SECTION, OtelSettings

        return {SECTION: OtelSettings}

    @hookimpl
    def flujo_run_view(self, run: RunRecord, config: FlujoConfig) -> RunViewSection | None:
        """The run's trace id (flujo-ui links it to the trace with ``[ui] trace_url``), when
        ``[otel]`` traces runs; and whether this run's trace was sampled."""
        from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

        from flujo.plugin import RunViewSection
        from flujo_otel.ids import trace_id_hex, trace_id_of
        from flujo_otel.settings import SECTION, OtelSettings, resolve

        settings = config.section(SECTION, OtelSettings)
        resolved = resolve(settings, os.environ if self._environ is None else self._environ)
        if not resolved.enabled:
            return None
        sampler = TraceIdRatioBased(resolved.sample_ratio)
        decision = sampler.should_sample(None, trace_id_of(run.run_id), "run").decision
        return RunViewSection(
            "Trace",
            fields={
                "trace id": trace_id_hex(run.run_id),
                "sampled": "yes" if decision is Decision.RECORD_AND_SAMPLE else "no",
                "service": resolved.service_name,
            },
        )

    @hookimpl
    def flujo_runtime_started(self, runtime: Runtime) -> None:
        """Start tracing this runner's runs when ``[otel]`` (or ``OTEL_*``) turns it on."""
        from flujo_otel.settings import SECTION, OtelSettings, resolve

        settings = runtime.config.section(SECTION, OtelSettings)
        resolved = resolve(settings, os.environ if self._environ is None else self._environ)
        if not resolved.enabled:
            # Installed but off: the runner neither calls our run and step hooks nor builds
            # their events.
            runtime.idle_plugins.add(DISTRIBUTION)
            return
        from flujo_otel.tracing import Tracing, instrument_agents

        instrument_agents()
        runtime.services[SERVICE] = Tracing(resolved, runtime.scrubbing, self._exporter(resolved))

    @hookimpl
    def flujo_runtime_closing(self, runtime: Runtime) -> None:
        """End what is still open and export everything queued before the runner closes."""
        tracing = _tracing(runtime)
        if tracing is None:
            return
        tracing.end_open_runs()

        async def shutdown() -> None:
            await asyncio.to_thread(tracing.shutdown)

        if not runtime.tasks.schedule("flujo-otel shutdown", shutdown):
            tracing.shutdown()  # refused (queue full): flushing late beats losing the trace

    @hookimpl
    def flujo_run_started(self, event: RunStarted, runtime: Runtime) -> None:
        tracing = _tracing(runtime)
        if tracing is not None:
            tracing.run_started(event)

    @hookimpl
    def flujo_wrap_step(
        self, event: StepStarted, runtime: Runtime
    ) -> AbstractContextManager[None] | None:
        tracing = _tracing(runtime)
        return None if tracing is None else tracing.step(event)

    @hookimpl
    def flujo_wrap_operation(
        self, operation: Operation, runtime: Runtime
    ) -> AbstractContextManager[None] | None:
        """A span for a sandbox execution, a memory search or indexing batch, a shadow
        evaluation (see :mod:`flujo_otel.operations`)."""
        tracing = _tracing(runtime)
        if tracing is None:
            return None
        from flujo_otel.operations import OperationSpan

        return OperationSpan(tracing, operation)

    @hookimpl
    def flujo_step_completed(self, event: StepCompleted, runtime: Runtime) -> None:
        tracing = _tracing(runtime)
        if tracing is not None:
            tracing.step_completed(event)

    @hookimpl
    def flujo_policy_decided(self, event: PolicyDecided, runtime: Runtime) -> None:
        tracing = _tracing(runtime)
        if tracing is not None:
            tracing.policy_decided(event)

    @hookimpl
    def flujo_run_finalized(self, event: RunFinalized, runtime: Runtime) -> None:
        tracing = _tracing(runtime)
        if tracing is not None:
            tracing.run_finalized(event)


def _tracing(runtime: Runtime) -> Tracing | None:
    tracing: Tracing | None = runtime.services.get(SERVICE)
    return tracing


_plugin = OtelPlugin()
flujo_config_sections = _plugin.flujo_config_sections
flujo_runtime_started = _plugin.flujo_runtime_started
flujo_runtime_closing = _plugin.flujo_runtime_closing
flujo_run_started = _plugin.flujo_run_started
flujo_wrap_step = _plugin.flujo_wrap_step
flujo_wrap_operation = _plugin.flujo_wrap_operation
flujo_step_completed = _plugin.flujo_step_completed
flujo_policy_decided = _plugin.flujo_policy_decided
flujo_run_finalized = _plugin.flujo_run_finalized
flujo_run_view = _plugin.flujo_run_view
