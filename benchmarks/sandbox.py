"""flujo-sandbox latency and throughput, every available backend in one run.

For each backend that can run here: p50/p95 latency of ``print(1)`` (sequential), and
throughput (executions per second) at concurrency 1, 4 and 16. The sidecar is measured as
``remote`` -> ``flujo sandbox serve``'s server (in-process, on 127.0.0.1) -> ``local``; its
overhead is its p50 minus local's p50. Where per-execution cgroups are usable, ``local-nocg``
shows ``local`` without them (``[sandbox] cgroups = "off"``), to show their cost.
Targets (issue #7): local p50 <= 50 ms; the sidecar adds
<= 10 ms. Prints figures, asserts nothing.

    python benchmarks/sandbox.py [--runs 40] [--jobs 48]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import statistics
import sys
import time
from typing import Any


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _latency(box: Any, runs: int) -> list[float]:
    await box.exec_code("print(1)")  # warm-up (probe, connection)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = await box.exec_code("print(1)")
        samples.append((time.perf_counter() - started) * 1000)
        if not result.ok:
            raise RuntimeError(f"print(1) failed: {result}")
    return samples


async def _throughput(box: Any, concurrency: int, jobs: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            result = await box.exec_code("print(1)")
            if not result.ok:
                raise RuntimeError(f"print(1) failed: {result}")

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(jobs)))
    return jobs / (time.perf_counter() - started)


async def _measure(name: str, box: Any, runs: int, jobs: int) -> dict[str, Any]:
    samples = await _latency(box, runs)
    rates = {c: await _throughput(box, c, jobs) for c in (1, 4, 16)}
    return {
        "name": name,
        "p50": statistics.median(samples),
        "p95": _pct(samples, 0.95),
        "rates": rates,
    }


async def main(runs: int, jobs: int) -> None:
    try:
        from flujo_sandbox.local import LocalSandbox, probe
        from flujo_sandbox.remote import RemoteSandbox
        from flujo_sandbox.server import SandboxServer, ServerConfig
        from flujo_sandbox.settings import SandboxSettings
    except ImportError:
        print("sandbox benchmark: flujo-sandbox is not installed; skipped")
        return

    print(
        f"flujo-sandbox benchmark: python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {runs} sequential runs, {jobs} jobs per concurrency level"
    )
    settings = SandboxSettings(backend="local")
    rows: list[dict[str, Any]] = []
    report = probe(settings)
    if not report.ok:
        print(f"local    unavailable: {'; '.join(report.problems)}")
    else:
        local = LocalSandbox(settings)
        rows.append(await _measure("local", local, runs, jobs))
        if report.details.get("cgroups"):
            # The per-execution cgroup (totals of memory and processes) has a cost: show it.
            bare = LocalSandbox(SandboxSettings(backend="local", cgroups="off"))
            rows.append(await _measure("local-nocg", bare, runs, jobs))
        server = SandboxServer(LocalSandbox(settings), ServerConfig(max_concurrency=32))
        await server.start("127.0.0.1", 0)
        try:
            remote = RemoteSandbox(
                SandboxSettings(api_url=f"http://127.0.0.1:{server.port}"), token=""
            )
            rows.append(await _measure("sidecar", remote, runs, jobs))
            await remote.aclose()
        finally:
            await server.close()
    if importlib.util.find_spec("docker") is not None:
        docker_note = "docker SDK present; needs a daemon (none is benchmarked here)"
    else:
        docker_note = "not installed (flujo-sandbox[docker])"
    print(f"docker   unavailable: {docker_note}")
    print("e2b      unavailable: cloud service, not benchmarked offline")

    print()
    print(f"{'backend':10} {'p50 ms':>8} {'p95 ms':>8} {'c=1 /s':>8} {'c=4 /s':>8} {'c=16 /s':>8}")
    for row in rows:
        rates = row["rates"]
        print(
            f"{row['name']:10} {row['p50']:8.1f} {row['p95']:8.1f} "
            f"{rates[1]:8.1f} {rates[4]:8.1f} {rates[16]:8.1f}"
        )
    by_name = {row["name"]: row for row in rows}
    if "local" in by_name and "sidecar" in by_name:
        extra = by_name["sidecar"]["p50"] - by_name["local"]["p50"]
        print()
        print(f"local p50 {by_name['local']['p50']:.1f} ms (target <= 50 ms)")
        print(f"sidecar adds {extra:.1f} ms at p50 (target <= 10 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=48)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.jobs))
    sys.exit(0)
