"""The app in a real browser: Debian's Chromium driven by Playwright (the system browser, never
``playwright install``), against the real uvicorn server on a loopback port over a SQLite
state holding real runs (a branch, a failure, a paused human step, a test plugin's run-view
section with hostile text and a score).

Flow: log in with the printed link, the runs list, filter it, open the run with the branch,
open the paused run, approve it and watch it finish (the page refreshes itself), the
pipelines page with its charts. Each page is saved as a screenshot (to
``$FLUJO_UI_SCREENSHOTS`` when set, the README's come from there; else a temporary folder).
Any console error (a Content-Security-Policy violation, a script error) fails the test.

Without Chromium the test skips with the reason; under CI (``CI=true``) it fails.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_testkit import DecisionsPlugin, ViewPlugin, make_config, populate, write_pipes

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found is None:
        why = "Chromium is not installed (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {why}")
        pytest.skip(why)
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str, dict[str, str]]]:
    """The real server (uvicorn, in a thread of this process so the test's run-view plugin is
    loaded in it) over a state with real runs: its base URL, its token and the run ids."""
    import uvicorn

    from flujo_ui.app import create_app

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'state.db'}"
    config = make_config(tmp_path, uri, ViewPlugin(), "", DecisionsPlugin())
    ids = asyncio.run(populate(config, write_pipes(tmp_path)))
    port = _free_port()
    token = "browser-test-token-42"
    app = create_app(config, token=token, port=port)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", token, ids
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("FLUJO_UI_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_browse_filter_open_branch_and_approve_a_paused_run(
    site: tuple[str, str, dict[str, str]], shots: Path
) -> None:
    executable = _chromium()
    from playwright.sync_api import expect, sync_playwright

    base, token, ids = site
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)

            def console(message: Any) -> None:
                if message.type == "error":
                    errors.append(message.text)

            page.on("console", console)
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # The printed link logs in and lands on the runs list.
            page.goto(f"{base}/login?token={token}")
            expect(page).to_have_url(f"{base}/runs")
            expect(page.locator("table.runs tbody tr")).to_have_count(4)
            expect(page.locator('.chip[data-status="paused"] b')).to_have_text("1")
            page.screenshot(path=str(shots / "runs.png"), full_page=True)

            # Filter by pipeline: htmx swaps the table in and the URL follows.
            page.fill('input[name="pipeline"]', "branchy")
            page.click('form.filters button[type="submit"]')
            expect(page.locator("table.runs tbody tr")).to_have_count(1)
            expect(page).to_have_url(re.compile(r"/runs\?.*pipeline=branchy"))
            page.screenshot(path=str(shots / "runs-filtered.png"), full_page=True)

            # The run with the branch: its tree by path, the plugin's section, nothing run.
            page.click(f'a[href="/runs/{ids["branch"]}"]')
            expect(page.locator("#run-status")).to_have_text("succeeded")
            refund = page.locator("table.timeline td.path", has_text="route/billing/refund")
            expect(refund).to_be_visible()
            page.click('a[href="#d-step-3"]')
            page.locator("#d-step-3 summary").click()
            expect(page.locator("#d-step-3 pre").first).to_contain_text("<script>")
            expect(page.locator("section.plugin h2")).to_contain_text("Checks <script>")
            assert page.title() != "pwned", "a stored string ran as script"
            page.screenshot(path=str(shots / "run-branch.png"), full_page=True)

            # The refused tool call, in the policy decisions section, where it happened.
            page.goto(f"{base}/runs/{ids['refused']}")
            decisions = page.locator("section.plugin", has_text="Policy decisions")
            expect(decisions).to_contain_text("refunds of 500 need a person")
            page.screenshot(path=str(shots / "run-refused-tool-call.png"), full_page=True)

            # The failed run: its error as stored, escaped.
            page.goto(f"{base}/runs/{ids['failed']}")
            expect(page.locator("#run-status")).to_have_text("failed")
            expect(page.locator("dd.err")).to_contain_text("boom <script>")
            assert page.title() != "pwned"

            # The paused run: the question and a form from the step's schema.
            page.goto(f"{base}/runs?status=paused")
            page.click(f'a[href="/runs/{ids["paused"]}"]')
            expect(page.locator("section.paused .question")).to_have_text("Refund this customer?")
            page.fill('input[name="answer.amount"]', "40")
            page.fill('#approve-form input[name="reason"]', "receipt checked")
            page.screenshot(path=str(shots / "run-paused.png"), full_page=True)
            page.click("button.approve")
            # Approved, resumed by this server, and the page follows it to the end.
            expect(page.locator("#run-status")).to_have_text("succeeded", timeout=60_000)
            expect(page.locator("table.timeline")).to_contain_text("approve@approval")
            expect(page.locator("#run-body")).to_contain_text("paid 40")
            page.screenshot(path=str(shots / "run-approved.png"), full_page=True)

            # Pipelines: success rate, durations and scores drawn from the JSON series.
            page.goto(f"{base}/pipelines")
            expect(page.locator(".charts[data-drawn=true]")).to_have_count(4)
            # The test plugin scores every run: one score chart per pipeline.
            expect(page.locator(".chart h3", has_text="Score: Checks")).to_have_count(4)
            page.screenshot(path=str(shots / "pipelines.png"), full_page=True)
        finally:
            browser.close()
    assert errors == [], f"console errors (CSP violations, script errors): {errors}"
