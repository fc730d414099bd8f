"""The spans of a runner's runs, built from the core's lifecycle hooks.

One :class:`Tracing` per runner (``runner.services["otel"]``), with its own ``TracerProvider``
whose batch exporter scrubs through that runner's policies (:mod:`flujo_otel.scrub`).

The tree of one run::

    run <pipeline>                     flujo_run_started .. flujo_run_finalized (or a pause)
      step <path>                      flujo_wrap_step (the step's execution; inner steps of
        step <path>/<inner>              branches, parallels, loops and maps nest by path)
          agent run / chat <model>     pydantic-ai's own instrumentation, routed here
            running tool <name>        pydantic-ai's tool span
              event flujo.policy       flujo_policy_decided (policy, decision, reason, rule)

A resumed run's ``run`` span is a child of the first one's (same trace id, see
:mod:`flujo_otel.ids`): the time the run waited paused is a gap, never an open span.

Everything here runs on the run's hot path (hooks): it starts and ends spans in memory and
never waits on I/O; the batch processor's thread scrubs and exports.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from flujo.application.scrubbing import stored_form
from flujo.plugin import providing_headers
from flujo_otel.ids import RunIdGenerator, forced_ids, release, root_span_id_of, trace_id_of
from flujo_otel.links import RunLinkSampler
from flujo_otel.scrub import ScrubbingExporter

if TYPE_CHECKING:
    from flujo.application.scrubbing import Scrubbing
    from flujo.domain.events import (
        PolicyDecided,
        RunFinalized,
        RunStarted,
        StepCompleted,
        StepStarted,
    )
    from flujo.domain.models import Usage
    from flujo_otel.settings import Resolved

SCOPE = "flujo_otel"
EVENT_POLICY = "flujo.policy_decision"
"""The name of a policy decision's span event."""

_active: ContextVar[Tracing | None] = ContextVar("flujo_otel_active", default=None)
"""The tracing of the step running in this context (pydantic-ai's spans go to its provider)."""


def active() -> Tracing | None:
    """The :class:`Tracing` of the step running in this context, if any."""
    return _active.get()


_propagator = TraceContextTextMapPropagator()


def _trace_headers() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the span current where a call is made."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def _json(value: Any) -> str:
    """A (scrubbed) value as JSON text for an attribute (the exporter scrubs it again)."""
    if isinstance(value, str):
        return value
    if value is None or type(value) in (int, float, bool):  # no conversion to ask for
        return json.dumps(value)
    return json.dumps(stored_form(value), ensure_ascii=False)


def _usage(usage: Usage) -> dict[str, Any]:
    if not (usage.input_tokens or usage.output_tokens or usage.requests):
        return {}
    return {
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "flujo.usage.requests": usage.requests,
        "flujo.usage.cost_usd": usage.cost_usd,
    }


@dataclass(slots=True)
class _Step:
    span: trace.Span
    top_level: bool
    ended_ns: int | None = None


@dataclass(slots=True)
class _Run:
    span: trace.Span
    trace_id: int
    steps: dict[str, list[_Step]] = field(default_factory=dict)


class _StepScope:
    """A step's span made current while the step runs (a class rather than a generator-based
    context manager: it is entered on every step's hot path)."""

    __slots__ = ("_headers", "_name", "_parent", "_record", "_run", "_tokens", "_tracing")

    def __init__(
        self, tracing: Tracing, run: _Run, name: str, record: _Step, parent: otel_context.Context
    ) -> None:
        self._tracing = tracing
        self._run = run
        self._name = name
        self._record = record
        self._parent = parent
        self._tokens: tuple[object, Token[Tracing | None]] | None = None
        # Calls the step makes to the sandbox sidecar or an OpenAPI service carry the trace
        # context of the span they are made in (the core's outgoing_headers()).
        self._headers = providing_headers(_trace_headers)

    def __enter__(self) -> None:
        span = self._record.span
        self._tokens = (
            otel_context.attach(trace.set_span_in_context(span, self._parent)),
            _active.set(self._tracing),
        )
        self._headers.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        record = self._record
        try:
            if exc is not None:
                # The step raised out of the core (cancelled, a lost lease): no completion
                # follows.
                record.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                record.span.end()
                self._tracing._forget(self._run, self._name, record)
        finally:
            assert self._tokens is not None
            context_token, routed = self._tokens
            self._headers.__exit__(None, None, None)
            _active.reset(routed)
            otel_context.detach(context_token)  # type: ignore[arg-type]
            record.ended_ns = time.time_ns()


class Tracing:
    """The spans of one runner's runs (see the module)."""

    def __init__(self, resolved: Resolved, scrubbing: Scrubbing, exporter: SpanExporter) -> None:
        self.resolved = resolved
        self._root_sampler = TraceIdRatioBased(resolved.sample_ratio)
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": resolved.service_name}),
            # Operations done apart from their runs (flujo_otel.operations) follow those runs.
            sampler=ParentBased(RunLinkSampler(self._root_sampler)),
            id_generator=RunIdGenerator(),
            # No truncation before the scrub: half an e-mail address is no longer recognized.
            span_limits=SpanLimits(
                max_attribute_length=SpanLimits.UNSET, max_span_attribute_length=SpanLimits.UNSET
            ),
        )
        self.provider.add_span_processor(BatchSpanProcessor(ScrubbingExporter(exporter, scrubbing)))
        self.tracer = self.provider.get_tracer(SCOPE)
        self._runs: dict[str, _Run] = {}
        self._closed = False

    # -- runs ---------------------------------------------------------------------------

    def run_started(self, event: RunStarted) -> None:
        stale = self._runs.pop(event.run_id, None)
        if stale is not None:  # the same runner runs it again: the last execution is over
            self._end_run(stale, status="superseded")
        trace_id = trace_id_of(event.run_id)
        root_id = root_span_id_of(event.run_id)
        attributes: dict[str, Any] = {
            "flujo.run_id": event.run_id,
            "flujo.pipeline": event.pipeline_name,
            "flujo.run.start": event.start,
            "flujo.run.resumed": event.resumed,
            "openinference.span.kind": "CHAIN",
            "input.value": _json(event.input),
        }
        # A run is a trace of its own (its id derives from the run id); the caller's span,
        # if any, is linked rather than made its parent.
        caller = trace.get_current_span().get_span_context()
        links = [Link(caller)] if caller.is_valid else None
        name = f"run {event.pipeline_name}"
        if event.resumed:
            decision = self._root_sampler.should_sample(None, trace_id, name).decision
            sampled = decision is Decision.RECORD_AND_SAMPLE
            flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
            first = NonRecordingSpan(SpanContext(trace_id, root_id, True, flags))
            parent = trace.set_span_in_context(first, otel_context.Context())
            span = self.tracer.start_span(name, parent, attributes=attributes, links=links)
        else:
            token = forced_ids(trace_id, root_id)
            try:
                span = self.tracer.start_span(
                    name, otel_context.Context(), attributes=attributes, links=links
                )
            finally:
                release(token)
        self._runs[event.run_id] = _Run(span, trace_id)

    def run_finalized(self, event: RunFinalized) -> None:
        run = self._runs.pop(event.run.run_id, None)
        if run is None:
            return
        record = event.run
        span = run.span
        span.set_attributes(_usage(record.usage))
        if record.output is not None:
            span.set_attribute("output.value", _json(record.output))
        failed = record.status.value not in ("succeeded",)
        self._end_run(run, status=record.status.value, error=record.error if failed else None)

    def _end_run(self, run: _Run, *, status: str, error: str | None = None) -> None:
        for records in run.steps.values():
            for step in records:  # a step whose end was never observed
                step.span.set_attribute("flujo.step.status", "unknown")
                step.span.end(end_time=step.ended_ns)
        run.steps.clear()
        run.span.set_attribute("flujo.run.status", status)
        if error is not None:
            run.span.set_status(Status(StatusCode.ERROR, error))
        elif status == "succeeded":
            run.span.set_status(Status(StatusCode.OK))
        run.span.end()

    # -- steps --------------------------------------------------------------------------

    def step(self, event: StepStarted) -> AbstractContextManager[None]:
        """The span of one step's execution, current for everything the step runs."""
        run = self._runs.get(event.run_id)
        if run is None:  # the run started before this tracing did: nothing to hang it on
            return nullcontext()
        current = otel_context.get_current()
        enclosing = trace.get_current_span(current).get_span_context()
        top_level = not (enclosing.is_valid and enclosing.trace_id == run.trace_id)
        parent = trace.set_span_in_context(run.span, current) if top_level else current
        attributes: dict[str, Any] = {
            "flujo.run_id": event.run_id,
            "flujo.step.name": event.step_name,
            "flujo.step.index": event.index,
            "openinference.span.kind": "CHAIN",
            "input.value": _json(event.input),
        }
        if event.tags:
            attributes["flujo.step.tags"] = list(event.tags)
        span = self.tracer.start_span(f"step {event.step_name}", parent, attributes=attributes)
        record = _Step(span, top_level)
        run.steps.setdefault(event.step_name, []).append(record)
        return _StepScope(self, run, event.step_name, record, parent)

    def _forget(self, run: _Run, name: str, record: _Step) -> None:
        records = run.steps.get(name, [])
        if record in records:
            records.remove(record)
        if not records:
            run.steps.pop(name, None)

    def step_completed(self, event: StepCompleted) -> None:
        run = self._runs.get(event.run_id)
        result = event.step
        if run is None or not run.steps.get(result.name):
            return
        record = run.steps[result.name][-1]
        self._forget(run, result.name, record)
        span = record.span
        attributes: dict[str, Any] = {
            "flujo.step.status": result.status.value,
            "flujo.step.attempts": result.attempts,
            "flujo.step.latency_ms": result.latency_ms,
        }
        if result.usage.input_tokens or result.usage.output_tokens or result.usage.requests:
            attributes.update(_usage(result.usage))
        if result.output is not None:
            attributes["output.value"] = _json(result.output)
        span.set_attributes(attributes)  # one call: the SDK takes its lock once per call
        if result.status.value in ("failed", "blocked", "limit_exceeded"):
            span.set_status(Status(StatusCode.ERROR, result.error or result.status.value))
        elif result.status.value == "succeeded":
            span.set_status(Status(StatusCode.OK))
        span.end(end_time=record.ended_ns)
        if result.status.value == "paused" and record.top_level:
            # The run waits for a person: its span ends now; a resume opens the next one.
            self._runs.pop(event.run_id, None)
            self._end_run(run, status="paused")

    # -- policies -----------------------------------------------------------------------

    def policy_decided(self, event: PolicyDecided) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            return
        attributes: dict[str, Any] = {
            "flujo.policy.name": event.policy,
            "flujo.policy.decision": event.decision.value,
            "flujo.policy.where": event.where,
        }
        if event.tool_name is not None:
            attributes["flujo.policy.tool"] = event.tool_name
        if event.reason is not None:
            attributes["flujo.policy.reason"] = event.reason
        if event.rule is not None:
            attributes["flujo.policy.rule"] = event.rule
        for kind, count in event.entities.items():
            attributes[f"flujo.policy.entities.{kind}"] = count
        span = trace.get_current_span()
        if not (span.is_recording() and span.get_span_context().trace_id == run.trace_id):
            records = run.steps.get(event.step_name)
            span = records[-1].span if records else run.span
        span.add_event(EVENT_POLICY, attributes)

    # -- shutdown -----------------------------------------------------------------------

    def end_open_runs(self) -> None:
        """End the spans of runs this runner stops without finalizing (interrupted, lost)."""
        runs, self._runs = self._runs, {}
        for run in runs.values():
            self._end_run(run, status="not finished")

    def shutdown(self) -> None:
        """Export what is queued and stop (blocking: call from a thread)."""
        if not self._closed:
            self._closed = True
            self.provider.shutdown()


# -- pydantic-ai's spans -----------------------------------------------------------------


class _RoutingTracer(trace.Tracer):
    """pydantic-ai's tracer: each span goes to the provider of the step it runs in (no span
    outside a traced step)."""

    def __init__(self, name: str, version: str | None) -> None:
        self._name = name
        self._version = version
        self._noop = trace.NoOpTracer()

    def _target(self) -> trace.Tracer:
        tracing = _active.get()
        if tracing is None:
            return self._noop
        return tracing.provider.get_tracer(self._name, self._version)

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        return self._target().start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    # The base class types this with OpenTelemetry's private decorator; a plain context
    # manager behaves the same for every caller.
    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        with self._target().start_as_current_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
            end_on_exit,
        ) as span:
            yield span


class _RoutingProvider(trace.TracerProvider):
    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> trace.Tracer:
        return _RoutingTracer(instrumenting_module_name, instrumenting_library_version)


_installed = False


def instrument_agents() -> bool:
    """Turn on pydantic-ai's instrumentation for every agent, routed to the running step's
    tracing (once per process). Left alone when the application set its own
    (``Agent.instrument_all(...)``, e.g. by Logfire): then pydantic-ai's spans go where it
    said, still under the step's span (the OpenTelemetry context is shared). Returns whether
    the routing is in place."""
    global _installed
    if _installed:
        return True
    from opentelemetry.metrics import NoOpMeterProvider
    from pydantic_ai import Agent
    from pydantic_ai.models.instrumented import InstrumentationSettings

    if Agent._instrument_default is not False:
        return False
    Agent.instrument_all(
        InstrumentationSettings(
            tracer_provider=_RoutingProvider(), meter_provider=NoOpMeterProvider()
        )
    )
    _installed = True
    return True
