"""Startup cost of the `flujo` command with no plugins and with every plugin installed.

Builds the wheels of flujo-core and of every plugin package in this repository (packages/*
and the example plugin), installs them into two fresh virtual environments with uv — core
alone, and core plus all plugins — and times `flujo --help` and `flujo plugins --json` in
each (median of N runs), next to bare interpreter startup in the same environment.
Target (issue #3): all plugins cost at most 30% over none.

    python benchmarks/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "packages" / "flujo-core"
PLUGINS = [
    *sorted(
        p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file() and p != CORE
    ),
    ROOT / "examples" / "flujo-plugin-example",
]
COMMANDS = {
    "python -c pass": ["python", "-c", "pass"],
    "flujo --help": ["flujo", "--help"],
    "flujo plugins --json": ["flujo", "plugins", "--json"],
}


def _run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True)


def _venv(folder: Path, wheels: list[Path]) -> Path:
    _run("uv", "venv", "-q", folder)
    _run("uv", "pip", "install", "-q", "--python", folder / "bin" / "python", *wheels)
    return folder / "bin"


def _median_ms(bin_dir: Path, argv: list[str], runs: int) -> float:
    exe = [str(bin_dir / argv[0]), *argv[1:]]
    subprocess.run(exe, check=True, capture_output=True)  # warm the page cache and .pyc files
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(exe, check=True, capture_output=True)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dist = Path(tmp) / "dist"
        for package in [CORE, *PLUGINS]:
            _run("uv", "build", "-q", "--wheel", "--out-dir", dist, package)
        wheels = sorted(dist.glob("*.whl"))
        core_wheel = [w for w in wheels if w.name.startswith("flujo_core-")]
        none = _venv(Path(tmp) / "none", core_wheel)
        every = _venv(Path(tmp) / "all", wheels)
        print(
            f"startup: median of {args.runs} runs; plugins installed in 'all': "
            + ", ".join(p.name for p in PLUGINS)
        )
        print(f"  {'command':<24}{'none (ms)':>12}{'all (ms)':>12}{'overhead':>10}")
        for label, argv in COMMANDS.items():
            a = _median_ms(none, argv, args.runs)
            b = _median_ms(every, argv, args.runs)
            print(f"  {label:<24}{a:>12.1f}{b:>12.1f}{(b / a - 1) * 100:>9.1f}%")
        print("  target: all plugins cost at most 30% over none")


if __name__ == "__main__":
    main()
