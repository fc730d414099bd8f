"""Regenerate flujo-otel's README screenshot: the support-desk demo's trace in Arize Phoenix.

Not run in CI (it takes a few minutes and a browser): run it by hand after changing what a
trace holds.

    python scripts/phoenix_demo_screenshot.py --phoenix /path/to/phoenix
    # or FLUJO_TEST_PHOENIX=/path/to/phoenix python scripts/phoenix_demo_screenshot.py

What it does, all on loopback: starts ``phoenix serve`` in a throwaway folder; copies
``examples/support_desk`` to another one and adds the README's two config lines to its
``flujo.toml`` (``[otel]`` / ``endpoint = ...``); runs ``demo.py --fresh`` there with this
interpreter (every package installed, as ``nox -s demo`` has them); waits until Phoenix has
the run's whole trace (the trace id is derived from the run id); opens the trace in Phoenix's
UI with Debian's Chromium through Playwright (never ``playwright install``), selects the
sandbox execution, and saves the screenshot.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from flujo_otel.ids import trace_id_hex
from flujo_otel.testing import PHOENIX_ENV, start_phoenix, stop_phoenix

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "support_desk"
OUT = ROOT / "packages" / "flujo-otel" / "docs" / "phoenix-demo-trace.png"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def _run_demo(folder: Path, endpoint: str) -> str:
    """Run the demo in ``folder`` tracing to ``endpoint``; the id of its run."""
    with (folder / "flujo.toml").open("a", encoding="utf-8") as toml:
        toml.write(f'\n[otel]\nendpoint = "{endpoint}"\n')  # the README's two lines
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUJO", "OTEL_"))}
    subprocess.run([sys.executable, "demo.py", "--fresh"], cwd=folder, env=env, check=True,
                   timeout=600)  # fmt: skip
    flujo = Path(sys.executable).with_name("flujo")
    listed = subprocess.run([str(flujo), "runs", "list", "--json"], cwd=folder, env=env,
                            check=True, capture_output=True, text=True, timeout=120)  # fmt: skip
    return str(json.loads(listed.stdout)[0]["run_id"])


def _wait_for_trace(url: str, trace_id: str, settle_s: float = 5.0) -> int:
    """Wait until Phoenix's count of the trace's spans stops growing; return it."""
    deadline = time.monotonic() + 180
    count, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/v1/projects/default/spans",
                           params={"trace_id": trace_id, "limit": 1000}, timeout=10)  # fmt: skip
        now = len(answer.json().get("data", [])) if answer.status_code == 200 else 0
        if now != count:
            count, stable_since = now, time.monotonic()
        elif count > 0 and time.monotonic() - stable_since > settle_s:
            return count
        time.sleep(0.5)
    raise SystemExit(f"Phoenix did not settle on the trace {trace_id} ({count} spans)")


def _project_id(url: str) -> str:
    projects = httpx.get(f"{url}/v1/projects", timeout=10).json()["data"]
    return str(next(p["id"] for p in projects if p["name"] == "default"))


def _screenshot(url: str, trace_id: str, out: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            # Tall enough for the whole tree: the run, its pause, the resumed execution.
            page = browser.new_page(viewport={"width": 1600, "height": 1800})
            page.set_default_timeout(60_000)
            page.goto(f"{url}/projects/{_project_id(url)}/traces/{trace_id}")
            page.get_by_text("sandbox.execute", exact=True).first.click()
            page.get_by_role("tab", name="Attributes").click()
            page.get_by_text("flujo.sandbox.exit_code").first.wait_for()
            page.wait_for_timeout(1500)  # let the panels finish rendering
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phoenix", default=os.environ.get(PHOENIX_ENV, ""),
                        help=f"the phoenix executable (default: ${PHOENIX_ENV})")  # fmt: skip
    parser.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT}")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    if not args.phoenix:
        raise SystemExit(f"--phoenix or {PHOENIX_ENV}: the path of a `phoenix` executable")
    with tempfile.TemporaryDirectory(prefix="flujo-phoenix-shot-") as scratch:
        work = Path(scratch)
        (work / "phoenix").mkdir()
        proc, url = start_phoenix(args.phoenix, work / "phoenix")
        try:
            folder = work / "support_desk"
            shutil.copytree(EXAMPLE, folder,
                            ignore=shutil.ignore_patterns(".flujo", "__pycache__"))  # fmt: skip
            run_id = _run_demo(folder, url)
            trace_id = trace_id_hex(run_id)
            spans = _wait_for_trace(url, trace_id)
            _screenshot(url, trace_id, args.out, args.chromium)
        finally:
            stop_phoenix(proc)
    print(f"run {run_id}: trace {trace_id}, {spans} spans -> {args.out}")


if __name__ == "__main__":
    main()
