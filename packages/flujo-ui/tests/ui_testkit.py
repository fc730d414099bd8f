"""Real runs for the UI tests: pipelines written to a file (so a run records where its
pipeline is, as ``flujo run`` does), run by the real runner on SQLite or PostgreSQL, and a
test plugin whose run-view section carries hostile text, a trace id and scores."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flujo import Flujo, FlujoConfig
from flujo.config import load_config
from flujo.plugin import RunRecord, RunViewSection, StateBackend, hookimpl, load_target
from flujo.plugins.manager import PluginManager

XSS = '<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">'

PIPES = """
from pydantic import BaseModel
from flujo import Step

XSS = {xss!r}


class Refund(BaseModel):
    amount: int
    note: str = ""


def triage(text: str) -> str:
    return text


def refund(text: str) -> str:
    return "refund for " + text + " " + XSS


def other(text: str) -> str:
    return "no refund"


def route(text: str) -> str:
    return "billing" if "refund" in text else "other"


def pay(r: Refund) -> str:
    return f"paid {{r.amount}}"


def explode(text: str) -> str:
    raise ValueError("boom " + XSS)


branchy = Step.from_callable(triage) >> Step.branch(
    "route", route, {{"billing": Step.from_callable(refund), "other": Step.from_callable(other)}}
)
approval = Step.from_callable(triage, name="ask") >> Step.human(
    "approve", schema=Refund, prompt="Refund this customer?"
) >> Step.from_callable(pay)
failing = Step.from_callable(explode)
"""


@dataclass
class ViewPlugin:
    """A plugin showing, for every run, a section as flujo-evals/governance/otel would."""

    calls: list[str] = field(default_factory=list)

    @hookimpl
    def flujo_run_view(self, run: RunRecord, state: StateBackend) -> RunViewSection | None:
        self.calls.append(run.run_id)
        return RunViewSection(
            "Checks " + XSS,
            fields={"trace id": "abc123" + run.run_id[:8], "note": XSS},
            columns=("step", "evaluator", "score", "reasoning"),
            rows=[("route", "judge", 0.75, "reasoning " + XSS)],
        )


def write_pipes(folder: Path) -> Path:
    path = folder / "pipes.py"
    path.write_text(PIPES.format(xss=XSS))
    return path


def make_config(
    folder: Path, uri: str, plugin: object | None = None, toml: str = ""
) -> FlujoConfig:
    (folder / "flujo.toml").write_text(f'[state]\nuri = "{uri}"\n{toml}')
    manager = PluginManager(strict=True)
    from flujo_ui import plugin as ui_plugin

    manager.register(ui_plugin, "flujo-ui")
    if plugin is not None:
        manager.register(plugin, "view-test")
    return load_config(folder / "flujo.toml", plugin_manager=manager, environ={})


async def run(config: FlujoConfig, pipes: Path, name: str, data: Any) -> str:
    ref = f"{pipes}:{name}"
    async with Flujo(load_target(ref), config=config, pipeline_ref=ref) as runner:
        result = await runner.run_async(data)
    return result.run_id


async def populate(config: FlujoConfig, pipes: Path) -> dict[str, str]:
    """One run of each kind: a branch, a paused human step, a failure."""
    ids = {
        "branch": await run(config, pipes, "branchy", "refund please"),
        "paused": await run(config, pipes, "approval", "order A-1"),
        "failed": await run(config, pipes, "failing", "x"),
    }
    time.sleep(0.01)
    return ids
