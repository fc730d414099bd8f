"""The spans of a runner's runs, built from the core's lifecycle hooks.

One :class:`Tracing` per runner (``runtime.services["otel"]``), with its own ``TracerProvider``
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

The run's path pays for as little as it can. The ``run`` and ``step`` spans are not the SDK's
``Span`` objects but records of plain values (:class:`~flujo_otel.records.SpanRecord`: name,
ids, times, attributes, status, events) the hooks fill in. While a step runs, a
``NonRecordingSpan`` with the step's ids is the current OpenTelemetry span, so what the step
runs (pydantic-ai's spans, another plugin's, the ``traceparent`` of outgoing calls) nests
under it exactly as under a recording span. An ended record goes to the batch processor's
queue as it is; turning it into the SDK's ``ReadableSpan``, scrubbing, encoding and sending
happen in the processor's export thread (:mod:`flujo_otel.records`, :mod:`flujo_otel.scrub`).
Nothing here waits on I/O.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from flujo.application.scrubbing import stored_form
from flujo.plugin import providing_headers
from flujo_otel.ids import RunIdGenerator, root_span_id_of, trace_id_of
from flujo_otel.links import RunLinkSampler
from flujo_otel.records import NO_LIMITS, SpanRecord
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

_active: ContextVar[tuple[Tracing, SpanRecord | None] | None] = ContextVar(
    "flujo_otel_active", default=None
)
"""The tracing of the step (or operation, :mod:`flujo_otel.operations`) running in this
context: pydantic-ai's spans go to its provider. With a step's record when the step's own span
is the current one (policy decisions taken in it become its events)."""


def routing_to(tracing: Tracing) -> Token[tuple[Tracing, SpanRecord | None] | None]:
    """Route pydantic-ai's spans started in this context to ``tracing`` (the current span is
    one of the SDK's, e.g. an operation's); undo with :func:`stop_routing`."""
    return _active.set((tracing, None))


def stop_routing(token: Token[tuple[Tracing, SpanRecord | None] | None]) -> None:
    """Undo :func:`routing_to`."""
    _active.reset(token)


def active() -> Tracing | None:
    """The :class:`Tracing` of the step running in this context, if any."""
    current = _active.get()
    return None if current is None else current[0]


_propagator = TraceContextTextMapPropagator()


def _trace_headers() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the span current where a call is made."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def _json(value: Any) -> str:
    """A (scrubbed) value as JSON text for an attribute (the exporter scrubs it again)."""
    kind = type(value)
    if kind is str:
        return cast(str, value)
    # What json.dumps answers for these, without its machinery (most steps pass scalars).
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    if kind is float:
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


class _Run:
    __slots__ = ("flags", "record", "steps", "trace_id")

    def __init__(self, record: SpanRecord | None, trace_id: int, flags: TraceFlags) -> None:
        self.record = record  # None: the run is not sampled
        self.trace_id = trace_id
        self.flags = flags
        self.steps: dict[str, list[SpanRecord]] = {}


class _StepScope:
    """A step's span made current while the step runs (a class rather than a generator-based
    context manager: it is entered on every step's hot path)."""

    __slots__ = ("_context", "_name", "_record", "_run", "_tokens", "_tracing")

    def __init__(
        self,
        tracing: Tracing,
        run: _Run,
        name: str,
        record: SpanRecord,
        context: otel_context.Context,
    ) -> None:
        self._tracing = tracing
        self._run = run
        self._name = name
        self._record = record
        self._context = context
        self._tokens: tuple[object, Token[Any], AbstractContextManager[None]] | None = None

    def __enter__(self) -> None:
        # Calls the step makes to the sandbox sidecar or an OpenAPI service carry the trace
        # context of the span they are made in (the core's outgoing_headers()).
        headers = providing_headers(_trace_headers)
        self._tokens = (
            otel_context.attach(self._context),
            _active.set((self._tracing, self._record)),
            headers,
        )
        headers.__enter__()

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
                record.status = (StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
                self._tracing._forget(self._run, self._name, record)
                record.end()
        finally:
            assert self._tokens is not None
            context_token, routed, headers = self._tokens
            headers.__exit__(None, None, None)
            _active.reset(routed)
            otel_context.detach(context_token)  # type: ignore[arg-type]
            record.ended_ns = time.time_ns()


class Tracing:
    """The spans of one runner's runs (see the module)."""

    def __init__(self, resolved: Resolved, scrubbing: Scrubbing, exporter: SpanExporter) -> None:
        self.resolved = resolved
        self._root_sampler = TraceIdRatioBased(resolved.sample_ratio)
        self.resource = Resource.create({"service.name": resolved.service_name})
        self.scope = InstrumentationScope(SCOPE)
        self.ids = RunIdGenerator()
        self.provider = TracerProvider(
            resource=self.resource,
            # Operations done apart from their runs (flujo_otel.operations) follow those runs.
            sampler=ParentBased(RunLinkSampler(self._root_sampler)),
            id_generator=self.ids,
            span_limits=NO_LIMITS,
        )
        self.processor = BatchSpanProcessor(ScrubbingExporter(exporter, scrubbing))
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer(SCOPE)
        self._tracers: dict[tuple[str, str | None], trace.Tracer] = {}
        self._runs: dict[str, _Run] = {}
        self._closed = False

    def tracer_for(self, name: str, version: str | None) -> trace.Tracer:
        """The provider's tracer of an instrumentation (pydantic-ai's), made once."""
        tracer = self._tracers.get((name, version))
        if tracer is None:
            tracer = self._tracers[(name, version)] = self.provider.get_tracer(name, version)
        return tracer

    # -- runs ---------------------------------------------------------------------------

    def run_started(self, event: RunStarted) -> None:
        stale = self._runs.pop(event.run_id, None)
        if stale is not None:  # the same runner runs it again: the last execution is over
            self._end_run(stale, status="superseded")
        trace_id = trace_id_of(event.run_id)
        root_id = root_span_id_of(event.run_id)
        name = f"run {event.pipeline_name}"
        decision = self._root_sampler.should_sample(None, trace_id, name).decision
        flags = TraceFlags(
            TraceFlags.SAMPLED if decision is Decision.RECORD_AND_SAMPLE else TraceFlags.DEFAULT
        )
        if not flags.sampled:
            # Nothing to record; the steps still carry the (unsampled) trace context, so
            # what they run is not sampled either.
            self._runs[event.run_id] = _Run(None, trace_id, flags)
            return
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
        links = (Link(caller),) if caller.is_valid else ()
        if event.resumed:
            # Under the first execution's run span (the ids derive from the run id).
            parent: SpanContext | None = SpanContext(trace_id, root_id, True, flags)
            context = SpanContext(trace_id, self.ids.generate_span_id(), False, flags)
        else:
            parent, context = None, SpanContext(trace_id, root_id, False, flags)
        record = SpanRecord(self, name, context, parent, attributes, links)
        self._runs[event.run_id] = _Run(record, trace_id, flags)

    def run_finalized(self, event: RunFinalized) -> None:
        run = self._runs.pop(event.run.run_id, None)
        if run is None:
            return
        record = event.run
        if run.record is not None:
            attributes = run.record.attributes
            attributes.update(_usage(record.usage))
            if record.output is not None:
                attributes["output.value"] = _json(record.output)
        failed = record.status.value not in ("succeeded",)
        self._end_run(run, status=record.status.value, error=record.error if failed else None)

    def _end_run(self, run: _Run, *, status: str, error: str | None = None) -> None:
        record = run.record
        if record is None:  # not sampled: nothing was recorded
            run.steps.clear()
            return
        for records in run.steps.values():
            for step in records:  # a step whose end was never observed
                step.attributes["flujo.step.status"] = "unknown"
                step.end(step.ended_ns)
        run.steps.clear()
        record.attributes["flujo.run.status"] = status
        if error is not None:
            record.status = (StatusCode.ERROR, error)
        elif status == "succeeded":
            record.status = (StatusCode.OK, None)
        record.end()

    # -- steps --------------------------------------------------------------------------

    def step(self, event: StepStarted) -> AbstractContextManager[None]:
        """The span of one step's execution, current for everything the step runs."""
        run = self._runs.get(event.run_id)
        if run is None:  # the run started before this tracing did: nothing to hang it on
            return nullcontext()
        current = otel_context.get_current()
        enclosing = trace.get_current_span(current).get_span_context()
        top_level = not (enclosing.is_valid and enclosing.trace_id == run.trace_id)
        ids = SpanContext(run.trace_id, self.ids.generate_span_id(), False, run.flags)
        run_record = run.record
        if run_record is None:  # not sampled: no values to record, only the ids to carry
            record = SpanRecord(self, "", ids, None, {}, top_level=top_level)
        else:
            attributes: dict[str, Any] = {
                "flujo.run_id": event.run_id,
                "flujo.step.name": event.step_name,
                "flujo.step.index": event.index,
                "openinference.span.kind": "CHAIN",
                "input.value": _json(event.input),
            }
            if event.tags:
                attributes["flujo.step.tags"] = list(event.tags)
            parent = run_record.context if top_level else enclosing
            record = SpanRecord(
                self, f"step {event.step_name}", ids, parent, attributes, top_level=top_level
            )
        run.steps.setdefault(event.step_name, []).append(record)
        context = trace.set_span_in_context(NonRecordingSpan(ids), current)
        return _StepScope(self, run, event.step_name, record, context)

    def _forget(self, run: _Run, name: str, record: SpanRecord) -> None:
        records = run.steps.get(name)
        if records is None:
            return
        if record in records:
            records.remove(record)
        if not records:
            del run.steps[name]

    def step_completed(self, event: StepCompleted) -> None:
        run = self._runs.get(event.run_id)
        result = event.step
        if run is None:
            return
        records = run.steps.get(result.name)
        if not records:  # its end was seen already (it raised out of the core)
            return
        record = records.pop()
        if not records:
            del run.steps[result.name]
        status = result.status.value
        if run.record is not None:
            attributes = record.attributes
            attributes["flujo.step.status"] = status
            attributes["flujo.step.attempts"] = result.attempts
            attributes["flujo.step.latency_ms"] = result.latency_ms
            usage = result.usage
            if usage.input_tokens or usage.output_tokens or usage.requests:
                attributes.update(_usage(usage))
            if result.output is not None:
                attributes["output.value"] = _json(result.output)
            if status in ("failed", "blocked", "limit_exceeded"):
                record.status = (StatusCode.ERROR, result.error or status)
            elif status == "succeeded":
                record.status = (StatusCode.OK, None)
            record.end(record.ended_ns)
        if status == "paused" and record.top_level:
            # The run waits for a person: its span ends now; a resume opens the next one.
            self._runs.pop(event.run_id, None)
            self._end_run(run, status="paused")

    # -- policies -----------------------------------------------------------------------

    def policy_decided(self, event: PolicyDecided) -> None:
        run = self._runs.get(event.run_id)
        if run is None or run.record is None:
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
        if span.is_recording() and span.get_span_context().trace_id == run.trace_id:
            span.add_event(EVENT_POLICY, attributes)  # a tool call's span (pydantic-ai's)
            return
        current = _active.get()
        step = None if current is None or current[0] is not self else current[1]
        if step is not None and step.end_time is None:
            step.add_event(EVENT_POLICY, attributes)  # the step running here
            return
        records = run.steps.get(event.step_name)
        (records[-1] if records else run.record).add_event(EVENT_POLICY, attributes)

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
        current = _active.get()
        if current is None:
            return self._noop
        return current[0].tracer_for(self._name, self._version)

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
