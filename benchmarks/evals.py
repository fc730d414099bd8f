"""Run throughput with flujo-evals enabled versus disabled, in one process (issue #8).

Enabled: ``[eval]`` with sampling 0.1 and the LLM judge, whose model is simulated (it answers
after ``--judge-latency-ms`` of I/O wait, as a remote model would). Disabled: the same config
with ``enabled = false``. Rounds alternate disabled/enabled on fresh SQLite files so machine
noise hits both alike; medians are compared. Target: at most 2% overhead on the run path.

Two scenarios:

- *production-like* (the target): the step waits ``--step-latency-ms`` like a model call and
  ``--concurrency`` runs are in flight at once; throughput in runs/s.
- *CPU-bound worst case*: a trivial step, runs one after the other, so every microsecond the
  judge's background work takes on the shared event loop shows up in the run time. Reported
  with the hot-path cost of the hook itself (sampling + scheduling).

    python benchmarks/evals.py [--runs 800] [--rounds 5] [--judge-latency-ms 50]
                               [--step-latency-ms 100] [--concurrency 16]

Needs flujo-core and flujo-evals (falls back to ``packages/flujo-evals/src`` when flujo-evals
is not installed).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
try:
    import flujo_evals  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT / "packages" / "flujo-evals" / "src"))

from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart  # noqa: E402
from pydantic_ai.models.function import AgentInfo, FunctionModel  # noqa: E402
from pydantic_ai.usage import RequestUsage  # noqa: E402

from flujo import Flujo, Pipeline, Step  # noqa: E402
from flujo.config import load_config  # noqa: E402
from flujo.plugins.manager import PluginManager  # noqa: E402
from flujo_evals import plugin as evals_plugin  # noqa: E402
from flujo_evals.engine import SERVICE, EvalEngine  # noqa: E402
from flujo_evals.evaluators import JudgeEvaluator  # noqa: E402


def answer(text: str) -> str:
    return text.upper()


def pipeline(step_latency_s: float) -> Pipeline:
    """One step: instant, or waiting ``step_latency_s`` like a model call."""
    if step_latency_s <= 0:
        return Pipeline([Step.from_callable(answer, name="answer")], name="bench")

    async def model_call(text: str) -> str:
        await asyncio.sleep(step_latency_s)
        return text.upper()

    return Pipeline([Step.from_callable(model_call, name="answer")], name="bench")


def simulated_judge(latency_s: float) -> FunctionModel:
    """A judge model that waits ``latency_s`` (I/O) and answers a verdict."""

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(latency_s)
        verdict = {"score": 0.8, "label": "good", "reasoning": "simulated"}
        part = ToolCallPart(info.output_tools[0].name, verdict, tool_call_id="judge-1")
        return ModelResponse(parts=[part], usage=RequestUsage(input_tokens=200, output_tokens=40))

    return FunctionModel(respond, model_name="simulated-judge")


class HookTimer:
    """Wraps the engine's ``on_run_finalized`` to time the hot-path work of the hook."""

    def __init__(self, engine: EvalEngine) -> None:
        self.total = 0.0
        self.calls = 0
        inner = engine.on_run_finalized

        def timed(run: Any) -> int:
            start = time.perf_counter()
            try:
                return inner(run)
            finally:
                self.total += time.perf_counter() - start
                self.calls += 1

        engine.on_run_finalized = timed  # type: ignore[method-assign]


async def one_round(
    folder: Path,
    *,
    enabled: bool,
    runs: int,
    latency_s: float,
    step_latency_s: float = 0.0,
    concurrency: int = 1,
) -> dict[str, float]:
    toml = folder / "flujo.toml"
    toml.write_text(
        '[state]\nuri = "sqlite:///flujo.db"\n'
        "[run]\nbackground_concurrency = 16\ndrain_timeout_s = 120\n"
        f"[eval]\nenabled = {'true' if enabled else 'false'}\nsampling_rate = 0.1\n"
        "evaluators = ['judge']\nconcurrency = 8\nevaluate_on_failure = true\n"
        "judge_model = 'test'\n"
    )
    manager = PluginManager()
    manager.register(evals_plugin, "flujo-evals")
    config = load_config(toml, plugin_manager=manager, environ={})
    runner: Flujo[Any] = Flujo(pipeline(step_latency_s), config=config)
    await runner.start()
    timer: HookTimer | None = None
    if enabled:
        engine = runner.services[SERVICE]
        engine.evaluators["judge"] = JudgeEvaluator(simulated_judge(latency_s), "Be right.")
        timer = HookTimer(engine)
    for i in range(50):  # warm-up
        await runner.run_async(f"warm {i}")
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await runner.run_async(f"hello {i}")

    start = time.perf_counter()
    cpu = time.process_time()
    if concurrency == 1:
        for i in range(runs):
            await runner.run_async(f"hello {i}")
    else:
        await asyncio.gather(*(one(i) for i in range(runs)))
    run_path = time.perf_counter() - start
    cpu = time.process_time() - cpu
    await runner.aclose()
    end_to_end = time.perf_counter() - start
    rows = 0
    if enabled:
        import sqlite3

        with sqlite3.connect(folder / "flujo.db") as conn:
            rows = conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
    return {
        "run_path_us": run_path / runs * 1e6,
        "runs_per_s": runs / run_path,
        "cpu_us": cpu / runs * 1e6,
        "end_to_end_us": end_to_end / runs * 1e6,
        "hook_us": (timer.total / timer.calls * 1e6) if timer and timer.calls else 0.0,
        "rows": float(rows),
    }


async def scenario(
    tmp: Path, name: str, args: argparse.Namespace, *, runs: int, step_ms: float, conc: int
) -> dict[bool, list[dict[str, float]]]:
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for r in range(args.rounds):
        for enabled in (False, True) if r % 2 == 0 else (True, False):
            folder = tmp / f"{name}-r{r}-{'on' if enabled else 'off'}"
            folder.mkdir()
            results[enabled].append(
                await one_round(
                    folder,
                    enabled=enabled,
                    runs=runs,
                    latency_s=args.judge_latency_ms / 1000,
                    step_latency_s=step_ms / 1000,
                    concurrency=conc,
                )
            )
    return results


def _med(results: dict[bool, list[dict[str, float]]], enabled: bool, key: str) -> float:
    return statistics.median(x[key] for x in results[enabled])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--judge-latency-ms", type=float, default=50.0)
    parser.add_argument("--step-latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        prod = await scenario(
            tmp, "prod", args, runs=args.runs, step_ms=args.step_latency_ms, conc=args.concurrency
        )
        cpu = await scenario(tmp, "cpu", args, runs=args.runs, step_ms=0.0, conc=1)
    print(
        f"flujo-evals benchmark: {args.runs} runs x {args.rounds} alternating rounds, sampling "
        f"0.1, LLM judge with {args.judge_latency_ms:g} ms simulated latency (medians)"
    )
    off, on = _med(prod, False, "runs_per_s"), _med(prod, True, "runs_per_s")
    print(f"production-like ({args.step_latency_ms:g} ms step, {args.concurrency} runs in flight):")
    print(f"  throughput, evals disabled : {off:8.1f} runs/s")
    print(f"  throughput, evals enabled  : {on:8.1f} runs/s")
    print(f"  run-path overhead          : {(off - on) / off * 100:+8.2f} %   (target <= 2%)")
    off_us, on_us = _med(cpu, False, "run_path_us"), _med(cpu, True, "run_path_us")
    print("CPU-bound worst case (instant step, one run at a time):")
    print(f"  run time, evals disabled   : {off_us:8.1f} us/run")
    change = (on_us - off_us) / off_us * 100
    print(f"  run time, evals enabled    : {on_us:8.1f} us/run  ({change:+.2f} %)")
    print(
        f"  CPU per run                : {_med(cpu, False, 'cpu_us'):8.1f} -> "
        f"{_med(cpu, True, 'cpu_us'):8.1f} us  (includes the judge's background work)"
    )
    hook = _med(cpu, True, "hook_us")
    print(
        f"  hook (sampling + schedule) : {hook:8.2f} us/run  "
        f"({hook / off_us * 100:.2f} % of a disabled run)"
    )
    print(f"  evaluation rows per round  : {_med(cpu, True, 'rows'):8.0f}")


if __name__ == "__main__":
    asyncio.run(main())
