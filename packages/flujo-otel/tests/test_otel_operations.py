"""Operations other plugins report through the core (``flujo.plugin.operation``) as spans:
a sandbox execution inside a tool call nests under the tool's span and is what the sidecar's
``traceparent`` names; a memory retrieval nests under its step; a shadow evaluation done in
the background is a trace of its own linked to the run's root span, with the score, sampled
as the run was; nothing raw is exported.

The reporting plugins are stand-ins written here against the core's contract (a plugin's
tests never install another plugin): the step and tool functions report what flujo-sandbox
and flujo-memory report, and a test plugin schedules an evaluation from
``flujo_run_finalized`` the way flujo-evals does. The real ones are traced together in
``tests/integration/test_otel_operations_real.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from flujo_otel.ids import root_span_id_of, trace_id_of
from flujo_otel.links import LINKED_RUN, RunLinkSampler, run_link, run_sampled
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision
from opentelemetry.trace import StatusCode
from otel_testkit import CARD, EMAIL, INPUT, NAME, PiiPolicy, leaks

from flujo import Flujo, Pipeline, RunStatus, Step, hookimpl, make_agent_async
from flujo.plugin import RunFinalized, Runtime, operation, outgoing_headers
from flujo.testing.models import call_tool, scripted_model


class ShadowEvals:
    """Evaluates each finished run in the background, as flujo-evals does."""

    def __init__(self) -> None:
        self.done = asyncio.Event()

    @hookimpl
    def flujo_run_finalized(self, event: RunFinalized, runtime: Runtime) -> None:
        run_id = event.run.run_id

        async def evaluate() -> None:
            attributes = {"flujo.eval.evaluator": "judge", "flujo.eval.step": "__final__"}
            with operation("eval.evaluate", attributes, runs=[run_id]) as op:
                judge = make_agent_async(scripted_model("0.75"), "Score the reply.")
                await judge.run("the reply")  # an LLM judge's own spans
                # What a careless judge might say: the exporter's scrub must catch it.
                op.set({"flujo.eval.score": 0.75, "flujo.eval.label": f"good for {NAME}"})
                # Names the tracer sets itself: a plugin cannot pass for another run.
                op.set({"flujo.run_id": "someone-else", "openinference.span.kind": "LLM"})
            self.done.set()

        runtime.tasks.schedule("evaluate", evaluate)


def _pipeline() -> Pipeline:
    async def run_code(code: str) -> str:
        """Run code in the sandbox."""
        attributes = {"flujo.sandbox.backend": "local", "flujo.sandbox.language": "python"}
        with operation("sandbox.execute", attributes) as op:
            headers = outgoing_headers()  # what the remote backend sends to the sidecar
            op.set(
                {"flujo.sandbox.exit_code": 0, "flujo.sandbox.traceparent": headers["traceparent"]}
            )
        return "4"

    async def recall(text: str) -> str:
        with operation("memory.retrieve", {"flujo.memory.store": "memory"}) as op:
            op.set({"flujo.memory.hits": 2, "flujo.memory.note": f"asked by {EMAIL}"})
        return text

    async def failing_lookup(text: str) -> str:
        try:
            with operation("memory.retrieve", {"flujo.memory.store": "qdrant"}):
                raise ConnectionError(f"store refused {CARD}")
        except ConnectionError:
            return "no memories"

    model = scripted_model(call_tool("run_code", code="print(2 + 2)"), "It is 4.")
    agent = make_agent_async(model, "Compute.", tools=[run_code])
    return Pipeline(
        [
            Step("compute", agent),
            Step.from_callable(recall, name="recall"),
            Step.from_callable(failing_lookup, name="lookup"),
        ],
        name="ops",
    )


def _parent_name(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> str | None:
    if span.parent is None:
        return None
    return next(s.name for s in spans if s.context.span_id == span.parent.span_id)


async def _run(
    make_config: Any, exporter: InMemorySpanExporter, toml: str = "[otel]\nenabled = true\n"
) -> tuple[Any, list[ReadableSpan]]:
    evals = ShadowEvals()
    config = make_config(toml)
    assert config.plugin_manager is not None
    config.plugin_manager.register(evals, "shadow-evals")
    async with Flujo(_pipeline(), config=config, policies=[PiiPolicy()]) as runner:
        result = await runner.run_async(INPUT)
        await asyncio.wait_for(evals.done.wait(), 10)
    return result, list(exporter.get_finished_spans())


async def test_a_sandbox_execution_nests_under_its_tool_and_names_the_sidecar_parent(
    make_config: Any, exporter: InMemorySpanExporter
) -> None:
    result, spans = await _run(make_config, exporter)
    assert result.status is RunStatus.SUCCEEDED, result.error
    [sandbox] = [s for s in spans if s.name == "sandbox.execute"]
    assert _parent_name(sandbox, spans) == "execute_tool run_code"
    assert sandbox.context.trace_id == trace_id_of(result.run_id)
    attributes = dict(sandbox.attributes or {})
    assert attributes["flujo.sandbox.backend"] == "local"
    assert attributes["flujo.sandbox.exit_code"] == 0  # a result set inside the block
    assert attributes["openinference.span.kind"] == "TOOL"
    ctx = sandbox.context
    assert (
        attributes["flujo.sandbox.traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
    )
    assert sandbox.status.status_code is StatusCode.OK


async def test_a_memory_retrieval_nests_under_its_step_and_an_error_is_its_status(
    make_config: Any, exporter: InMemorySpanExporter
) -> None:
    _, spans = await _run(make_config, exporter)
    retrievals = {_parent_name(s, spans): s for s in spans if s.name == "memory.retrieve"}
    assert set(retrievals) == {"step recall", "step lookup"}
    ok, failed = retrievals["step recall"], retrievals["step lookup"]
    assert ok.attributes is not None
    assert ok.attributes["flujo.memory.hits"] == 2
    assert ok.attributes["openinference.span.kind"] == "RETRIEVER"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ConnectionError: store refused <CARD>"


async def test_a_shadow_evaluation_is_linked_to_the_runs_root_span_with_its_score(
    make_config: Any, exporter: InMemorySpanExporter
) -> None:
    result, spans = await _run(make_config, exporter)
    [evaluation] = [s for s in spans if s.name == "eval.evaluate"]
    assert evaluation.parent is None  # done after the run: a trace of its own
    assert evaluation.context.trace_id != trace_id_of(result.run_id)
    [link] = evaluation.links
    assert link.context.trace_id == trace_id_of(result.run_id)
    assert link.context.span_id == root_span_id_of(result.run_id)
    [root] = [s for s in spans if s.name == "run ops"]
    assert (root.context.trace_id, root.context.span_id) == (
        link.context.trace_id,
        link.context.span_id,
    )  # the link points at a span that exists
    assert dict(link.attributes or {}) == {LINKED_RUN: result.run_id}
    judged = [s for s in spans if s.context.trace_id == evaluation.context.trace_id]
    assert {_parent_name(s, spans) for s in judged if s.name.startswith("invoke_agent")} == {
        "eval.evaluate"
    }  # the judge's agent span nests under the evaluation
    attributes = dict(evaluation.attributes or {})
    assert attributes["flujo.eval.score"] == 0.75
    assert attributes["flujo.run_id"] == result.run_id
    assert attributes["openinference.span.kind"] == "EVALUATOR"


async def test_nothing_raw_is_exported_from_operations(
    make_config: Any, exporter: InMemorySpanExporter
) -> None:
    _, spans = await _run(make_config, exporter)
    operations = [s for s in spans if "flujo.operation" in (s.attributes or {})]
    assert len(operations) == 4
    assert leaks(spans) == []
    by_name = {s.name: dict(s.attributes or {}) for s in operations}
    assert by_name["eval.evaluate"]["flujo.eval.label"] == "good for <NAME>"


async def test_a_run_sampled_out_has_no_evaluation_span_either(
    make_config: Any, exporter: InMemorySpanExporter
) -> None:
    toml = "[otel]\nenabled = true\nsample_ratio = 0.0\n"
    result, spans = await _run(make_config, exporter, toml)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert spans == []


def test_a_linked_root_span_is_sampled_as_its_runs_were() -> None:
    sampler = RunLinkSampler(ALWAYS_ON)
    run = "run-1"
    assert run_sampled(run, 1.0)
    assert not run_sampled(run, 0.0)
    in_ = run_link(run, 1.0)
    out = run_link(run, 0.0)

    def decision(links: list[Any], root: Any = sampler) -> Decision:
        return root.should_sample(None, 0xABC, "eval.evaluate", links=links).decision

    assert decision([out]) is Decision.DROP  # the root sampler would have kept it
    assert decision([out, in_]) is Decision.RECORD_AND_SAMPLE  # one sampled run is enough
    assert decision([in_], RunLinkSampler(ALWAYS_OFF)) is Decision.RECORD_AND_SAMPLE
    assert decision([]) is Decision.RECORD_AND_SAMPLE  # no run linked: the root sampler
