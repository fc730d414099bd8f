"""Per-step overhead of flujo-otel, beside the same pipeline without it, in the same run.

Pipeline: N no-op async steps, SQLite state (as ``benchmarks/step_overhead.py``). Three
runners, measured alternately one run each per round (the order rotates), medians over the
rounds:

- **absent**: no plugin loaded;
- **installed, off**: flujo-otel loaded, no ``[otel]`` endpoint (it traces nothing);
- **tracing**: ``[otel] endpoint`` pointing at a tiny OTLP/HTTP collector on loopback (this
  file's :class:`Sink`), through the real batch processor and OTLP/HTTP exporter.

Target (issue #20): tracing adds at most 10 % per step; absent adds nothing (it is the
baseline). Wall-clock is the measure, CPU time is printed beside it. The sink decodes what it
receives and the span count is printed, so the exporter is known to have run.

Each tracing sample ends with a flush of the batch processor, so every sample pays for
encoding and sending its own spans (without it, the median would mostly miss the export, which
happens once every ~10 runs). The **floor** is the bare OpenTelemetry SDK doing the same work
with no flujo at all: per round, one root span and N child spans with as many attributes as
flujo-otel's, through the same ``BatchSpanProcessor`` and OTLP/HTTP exporter to the same
collector, flushed the same way, in the same rounds. Its extra over the baseline is what any
tracing costs in this process; what tracing costs beyond it is flujo's.

    python benchmarks/otel.py [--steps 50] [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from flujo_otel.plugin import OtelPlugin
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from flujo import Flujo, FlujoConfig, Pipeline, Step
from flujo.config import load_config
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend


class Sink:
    """An OTLP/HTTP trace collector on loopback that counts the spans it receives."""

    def __init__(self) -> None:
        self.spans = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest.FromString(body)
                sink.spans += sum(
                    len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def _noop(x: int) -> int:
    return x


def _pipeline(n: int) -> Pipeline:
    return Pipeline([Step.from_callable(_noop, name=f"s{i}") for i in range(n)], name="bench")


def _config(folder: Path, toml: str, plugin: bool) -> FlujoConfig:
    folder.mkdir()
    (folder / "flujo.toml").write_text(toml)
    manager = PluginManager(strict=True)
    if plugin:
        manager.register(OtelPlugin(environ={}), "flujo-otel")
    return load_config(folder / "flujo.toml", plugin_manager=manager, environ={})


class Floor:
    """The bare SDK: the spans of one flujo run (a root, one child per step, the same numbers
    of attributes), started and ended in a loop, through the same exporter to ``sink``."""

    def __init__(self, sink: Sink, steps: int) -> None:
        self.steps = steps
        self.provider = TracerProvider(resource=Resource.create({"service.name": "floor"}))
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{sink.url}/v1/traces"))
        )
        self.tracer = self.provider.get_tracer("floor")

    async def run(self) -> None:
        tracer = self.tracer
        root = tracer.start_span(
            "run bench",
            attributes={
                "flujo.run_id": "r",
                "flujo.pipeline": "bench",
                "flujo.run.start": 0,
                "flujo.run.resumed": False,
                "openinference.span.kind": "CHAIN",
                "input.value": "0",
            },
        )
        parent = trace.set_span_in_context(root)
        for i in range(self.steps):
            span = tracer.start_span(
                f"step s{i}",
                parent,
                attributes={
                    "flujo.run_id": "r",
                    "flujo.step.name": f"s{i}",
                    "flujo.step.index": i,
                    "openinference.span.kind": "CHAIN",
                    "input.value": "0",
                },
            )
            span.set_attributes(
                {
                    "flujo.step.status": "succeeded",
                    "flujo.step.attempts": 1,
                    "flujo.step.latency_ms": 0.01,
                    "output.value": "0",
                }
            )
            span.end()
        root.set_attributes({"output.value": "0", "flujo.run.status": "succeeded"})
        root.end()
        await asyncio.sleep(0)  # a flujo run yields to the loop too

    def flush(self) -> None:
        self.provider.force_flush()


async def _us_per_step(run: Callable[[], Awaitable[object]], steps: int) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    await run()
    return (time.perf_counter() - t0) / steps * 1e6, (time.process_time() - c0) / steps * 1e6


async def _measure(
    folder: Path, steps: int, runs: int, sink: Sink
) -> dict[str, tuple[float, float]]:
    configs = {
        "absent": _config(folder / "absent", "", plugin=False),
        "installed, off": _config(folder / "off", "", plugin=True),
        "tracing": _config(folder / "on", f'[otel]\nendpoint = "{sink.url}"\n', plugin=True),
    }
    floor = Floor(sink, steps)
    runners = {
        name: Flujo(_pipeline(steps), config=config, state=SQLiteBackend(folder / f"{name}.db"))
        for name, config in configs.items()
    }
    names = [*runners, "SDK floor"]
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}

    def runner_of(name: str) -> Callable[[], Awaitable[object]]:
        async def run() -> None:
            if name == "SDK floor":
                await floor.run()
                floor.flush()
                return
            runner = runners[name]
            result = await runner.run_async(0)
            assert result.succeeded
            if "otel" in runner.services:  # pay for this run's export in this sample
                runner.services["otel"].provider.force_flush()

        return run

    for runner in runners.values():
        await runner.__aenter__()
    try:
        for name in names:
            await runner_of(name)()  # warm-up
        for i in range(runs):
            order = names[i % len(names) :] + names[: i % len(names)]
            for name in order:
                samples[name].append(await _us_per_step(runner_of(name), steps))
    finally:
        for runner in runners.values():
            await runner.__aexit__(None, None, None)
        floor.provider.shutdown()
    return {
        name: (statistics.median(s[0] for s in got), statistics.median(s[1] for s in got))
        for name, got in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    sink = Sink()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            figures = asyncio.run(_measure(Path(tmp), args.steps, args.runs, sink))
    finally:
        sink.close()
    print(
        f"flujo-otel step overhead: {args.steps} no-op steps x {args.runs} rounds, SQLite "
        f"state (load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end)"
    )
    base, base_cpu = figures["absent"]
    for name, (wall, cpu) in figures.items():
        print(
            f"  {name:15} {wall:8.1f} us/step ({wall / base - 1:+6.1%})   "
            f"CPU {cpu:7.1f} us/step ({cpu / base_cpu - 1:+6.1%})"
        )
    floor_cpu = figures["SDK floor"][1]
    print(f"  spans received by the loopback collector: {sink.spans}")
    print(
        f"  tracing's CPU beyond the bare SDK's: {figures['tracing'][1] - base_cpu - floor_cpu:.1f}"
        f" us/step (the SDK floor's whole cost is {floor_cpu:.1f} us/step)"
    )
    print("  target: tracing <= +10 % per step; absent is the baseline")


if __name__ == "__main__":
    main()
