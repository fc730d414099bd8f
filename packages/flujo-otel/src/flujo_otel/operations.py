"""Spans of the operations plugins report through the core (``flujo_wrap_operation``):
sandbox executions, memory retrievals and indexing batches, shadow evaluations.

flujo-otel knows none of the plugins doing the work: they report an
:class:`~flujo.plugin.Operation` (a kind, attributes that describe it, the runs it serves
when done apart from them) and this module makes it a span:

- **inside a step** (``operation.runs`` empty: a sandbox call from a tool, a
  ``context.retrieve``): a child of the span current where it runs (the tool's, else the
  step's), made current itself, so the sandbox sidecar's ``traceparent`` names it and
  pydantic-ai's spans inside it nest under it;
- **apart from its runs** (``operation.runs``: an indexing batch, a shadow evaluation, both
  in the background after the step or run): the root of a trace of its own, with an OTel
  **link** to the root span of each run it serves (ids derived from the run id, see
  :mod:`flujo_otel.ids`), sampled when one of those runs was: a run's evaluation is in the
  backend exactly when the run is.

Attributes pass the exporter's scrub like everything else; the plugins report counts and
names, never the code, query or output.
"""

from __future__ import annotations

from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Status, StatusCode

from flujo_otel import tracing as _tracing_module
from flujo_otel.links import run_link

if TYPE_CHECKING:
    from flujo.plugin import Operation
    from flujo_otel.tracing import Tracing

MAX_LINKS = 64
"""Links kept per span (an indexing batch may hold many runs); the count is an attribute."""

# OpenInference's span kinds (what Phoenix shows as the span's type).
_KIND = {
    "sandbox.execute": "TOOL",
    "memory.retrieve": "RETRIEVER",
    "memory.index": "CHAIN",
    "eval.evaluate": "EVALUATOR",
}


class OperationSpan:
    """The span of one operation, current while it runs (a class, not a generator: it is
    entered on the operation's path)."""

    __slots__ = ("_operation", "_own", "_span", "_tokens", "_tracing")

    def __init__(self, tracing: Tracing, operation: Operation) -> None:
        self._tracing = tracing
        self._operation = operation
        self._span: trace.Span | None = None
        self._own: dict[str, Any] = {}
        self._tokens: tuple[object, Token[Any]] | None = None

    def __enter__(self) -> None:
        op = self._operation
        own: dict[str, Any] = {
            "flujo.operation": op.kind,
            "openinference.span.kind": _KIND.get(op.kind, "CHAIN"),
        }
        links: list[Link] | None = None
        if op.runs:
            # Done apart from its runs: a trace of its own, linked to theirs.
            parent = otel_context.Context()
            ratio = self._tracing.resolved.sample_ratio
            links = [run_link(run_id, ratio) for run_id in op.runs[:MAX_LINKS]]
            own["flujo.operation.runs"] = len(op.runs)
            if len(op.runs) == 1:
                own["flujo.run_id"] = op.runs[0]
        else:
            parent = otel_context.get_current()
        self._own = own
        # What the plugin reported, then ours: a plugin cannot pass for another run or kind.
        attributes = {**op.attributes, **own}
        span = self._tracing.tracer.start_span(op.kind, parent, attributes=attributes, links=links)
        self._span = span
        self._tokens = (
            otel_context.attach(trace.set_span_in_context(span, parent)),
            # pydantic-ai's spans inside (an LLM judge's) go to this tracing, under this span.
            _tracing_module.routing_to(self._tracing),
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        span, tokens = self._span, self._tokens
        if span is None or tokens is None:
            return
        op = self._operation
        try:
            own = self._own
            # The results came in while it ran.
            span.set_attributes({k: v for k, v in op.attributes.items() if k not in own})
            if exc is not None:
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            elif op.error is not None:
                span.set_status(Status(StatusCode.ERROR, op.error))
            else:
                span.set_status(Status(StatusCode.OK))
            span.end()
        finally:
            context_token, routed = tokens
            _tracing_module.stop_routing(routed)
            otel_context.detach(context_token)  # type: ignore[arg-type]
