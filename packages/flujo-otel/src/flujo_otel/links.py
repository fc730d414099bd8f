"""Links from a span to a run's trace, and the sampling that follows them.

An operation done apart from its run (an indexing batch, a shadow evaluation, in the
background after the step or run) is the root of a trace of its own, linked to the root span
of each run it serves: both ids derive from the run id (:mod:`flujo_otel.ids`), so the link
needs nothing stored. It is sampled when one of those runs was, so a run's evaluation is in
the backend exactly when the run is, whatever the sample ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import Link, SpanContext, TraceFlags

from flujo_otel.ids import root_span_id_of, trace_id_of

if TYPE_CHECKING:
    from opentelemetry import context as otel_context
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.span import TraceState
    from opentelemetry.util.types import Attributes

LINKED_RUN = "flujo.linked_run"
"""The attribute of a link to a run's root span (its value: the run id)."""


def run_sampled(run_id: str, sample_ratio: float) -> bool:
    """Whether run ``run_id``'s trace is sampled at ``sample_ratio`` (as its root span was)."""
    sampler = TraceIdRatioBased(sample_ratio)
    decision = sampler.should_sample(None, trace_id_of(run_id), "run").decision
    return decision is Decision.RECORD_AND_SAMPLE


def run_link(run_id: str, sample_ratio: float) -> Link:
    """A link to run ``run_id``'s root span, carrying whether that run was sampled."""
    flags = TraceFlags(TraceFlags.SAMPLED if run_sampled(run_id, sample_ratio) else 0)
    context = SpanContext(trace_id_of(run_id), root_span_id_of(run_id), True, flags)
    return Link(context, {LINKED_RUN: run_id})


class RunLinkSampler(Sampler):
    """``root`` for every root span, except one linked to runs: sampled when one of those
    runs was (each link carries its run's sampled flag, see :func:`run_link`)."""

    def __init__(self, root: Sampler) -> None:
        self._root = root

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        runs = [link for link in links or () if (link.attributes or {}).get(LINKED_RUN)]
        if not runs:
            return self._root.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        if any(link.context.trace_flags.sampled for link in runs):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return SamplingResult(Decision.DROP, None, trace_state)

    def get_description(self) -> str:
        return f"RunLinkSampler{{{self._root.get_description()}}}"
