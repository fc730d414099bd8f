"""One plugin's failure, whatever it raises and however it hangs, stays that plugin's.

Observers of several plugins: one failing never stops the others. Import and registration:
``SystemExit``, a ``KeyboardInterrupt`` the plugin raised itself and other ``BaseException``s
are isolated like ``Exception``; a real Ctrl-C still stops the program; a hanging import is
given up after ``[plugins] import_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, FlujoConfig, Pipeline, Step, hookimpl
from flujo.domain.interfaces import PolicyDecision
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.cli import run_flujo

MakeDist = Callable[..., Path]


class _Weird(BaseException):
    """Neither an Exception nor an interrupt: what a careless plugin might raise."""


class _Recorder:
    """A plugin observing every observer hook."""

    def __init__(self, name: str, seen: list[str]) -> None:
        self.name, self.seen = name, seen

    @hookimpl
    def flujo_step_completed(self, event: Any) -> None:
        self.seen.append(f"{self.name}:step")

    @hookimpl
    def flujo_policy_decided(self, event: Any) -> None:
        self.seen.append(f"{self.name}:decided")

    @hookimpl
    def flujo_run_finalized(self, event: Any) -> None:
        self.seen.append(f"{self.name}:finalized")

    @hookimpl
    def flujo_runtime_closing(self, runtime: Any) -> None:
        self.seen.append(f"{self.name}:closing")


class _Broken:
    """A plugin whose every observer raises ``exc``."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    @hookimpl
    def flujo_step_completed(self, event: Any) -> None:
        raise self.exc

    @hookimpl
    def flujo_policy_decided(self, event: Any) -> None:
        raise self.exc

    @hookimpl
    def flujo_run_finalized(self, event: Any) -> None:
        raise self.exc

    @hookimpl
    def flujo_runtime_closing(self, runtime: Any) -> None:
        raise self.exc


class _Allow:
    name = "allow"

    def inspect_input(self, context: Any, data: Any) -> tuple[PolicyDecision, Any]:
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(self, context: Any, tool_name: str, args: Any) -> PolicyDecision:
        return PolicyDecision.ALLOW


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("observer bug"), SystemExit(3), _Weird("weird"), asyncio.CancelledError()],
    ids=["exception", "system-exit", "base-exception", "cancelled"],
)
def test_a_failing_observer_does_not_stop_the_other_plugins_observers(
    tmp_path: Path, exc: BaseException
) -> None:
    """Pluggy calls the last registered first: the broken plugin sits between two others, so
    both the observer before it and the one after it must still see every event."""
    seen: list[str] = []
    manager = PluginManager()
    manager.register(_Recorder("first", seen), "flujo-first")
    manager.register(_Broken(exc), "flujo-broken")
    manager.register(_Recorder("last", seen), "flujo-last")

    async def go() -> tuple[Any, list[str]]:
        runner: Flujo[Any] = Flujo(
            Pipeline([Step.from_callable(str.upper, name="up")]),
            config=FlujoConfig(plugin_manager=manager),
            state=SQLiteBackend(tmp_path / "s.db"),
            policies=[_Allow()],
        )
        result = await runner.run_async("a")
        await runner.aclose()
        return result, [f.error for f in runner.runtime.tasks.failures]

    result, failures = asyncio.run(go())
    assert (result.succeeded, result.output) == (True, "A")
    for hook in ("decided", "step", "finalized", "closing"):
        assert f"first:{hook}" in seen, (hook, seen)
        assert f"last:{hook}" in seen, (hook, seen)
    assert len(failures) == 4
    assert all(f.startswith("flujo-broken.flujo_") for f in failures)
    assert type(exc).__name__ in failures[0]


def test_a_keyboard_interrupt_in_an_observer_stops_the_run(tmp_path: Path) -> None:
    """During a run a Ctrl-C cannot be told from a plugin's own KeyboardInterrupt: stop."""
    manager = PluginManager()
    manager.register(_Broken(KeyboardInterrupt()), "flujo-broken")

    async def go() -> None:
        async with Flujo(
            Pipeline([Step.from_callable(str.upper, name="up")]),
            config=FlujoConfig(plugin_manager=manager),
            state=SQLiteBackend(tmp_path / "s.db"),
        ) as runner:
            await runner.run_async("a")

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(go())


GOOD = """
def flujo_register_tools(register):
    register("iso_good_tool", lambda config: print)
"""

RAISES_AT_IMPORT = {
    "flujo-exits": "import sys\nsys.exit(0)\n",
    "flujo-interrupts": "raise KeyboardInterrupt\n",
    "flujo-weird": "class Weird(BaseException):\n    pass\nraise Weird('odd')\n",
    "flujo-generator-exit": "raise GeneratorExit\n",
}

RAISES_AT_REGISTRATION = {
    "flujo-reg-exits": "import sys\ndef flujo_register_tools(register):\n    sys.exit(1)\n",
    "flujo-reg-interrupts": "def flujo_register_tools(register):\n    raise KeyboardInterrupt\n",
    "flujo-reg-commands": "def flujo_register_commands(cli):\n    raise SystemExit(2)\n",
}


def _install(make_dist: MakeDist, plugins: dict[str, str]) -> str:
    for dist, source in plugins.items():
        make_dist(dist, dist.replace("-", "_"), source)
    return ",".join(plugins)


def test_base_exceptions_at_import_and_registration_are_isolated(make_dist: MakeDist) -> None:
    every = {"flujo-iso-good": GOOD, **RAISES_AT_IMPORT, **RAISES_AT_REGISTRATION}
    names = _install(make_dist, every)
    manager = PluginManager()
    manager.load_entry_points(environ={"FLUJO_LOAD_PLUGINS": names})
    listed = {p.name: p for p in manager.plugins}
    assert listed["flujo-iso-good"].status == "ok"
    assert manager.registry.names("tools") == ["iso_good_tool"]
    for name in set(every) - {"flujo-iso-good", "flujo-reg-commands"}:
        assert listed[name].status == "error", (name, listed[name])
    assert listed["flujo-exits"].error == "failed to import: SystemExit(0)"
    assert listed["flujo-interrupts"].error == "failed to import: KeyboardInterrupt()"
    assert listed["flujo-weird"].error == "failed to import: Weird('odd')"
    assert listed["flujo-reg-exits"].error == "failed to register: SystemExit(1)"
    assert listed["flujo-reg-interrupts"].error == "failed to register: KeyboardInterrupt()"


def test_the_cli_lists_them_and_keeps_working(make_dist: MakeDist, tmp_path: Path) -> None:
    names = _install(
        make_dist, {"flujo-iso-good": GOOD, **RAISES_AT_IMPORT, **RAISES_AT_REGISTRATION}
    )
    env = {"FLUJO_LOAD_PLUGINS": names}
    proc = run_flujo("plugins", "--json", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    mine = set(names.split(","))
    status = {p["name"]: p["status"] for p in json.loads(proc.stdout) if p["name"] in mine}
    assert status.pop("flujo-iso-good") == "ok"
    assert set(status.values()) == {"error"}, status
    errors = {p["name"]: p["error"] for p in json.loads(proc.stdout)}
    assert errors["flujo-reg-commands"] == "failed to add commands: SystemExit(2)"
    assert run_flujo("--help", cwd=tmp_path, env=env).returncode == 0


HANGS = """
import os, time
open(os.environ["HANG_MARKER"], "w").close()
time.sleep(600)
"""


def test_a_plugin_hanging_at_import_is_given_up_after_the_timeout(
    make_dist: MakeDist, tmp_path: Path
) -> None:
    names = _install(make_dist, {"flujo-iso-good": GOOD, "flujo-hangs": HANGS})
    (tmp_path / "flujo.toml").write_text("[plugins]\nimport_timeout_s = 0.5\n")
    env = {"FLUJO_LOAD_PLUGINS": names, "HANG_MARKER": str(tmp_path / "started")}
    proc = run_flujo("plugins", "--json", cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed = {p["name"]: p for p in json.loads(proc.stdout)}
    assert (listed["flujo-hangs"]["status"], listed["flujo-hangs"]["error"]) == (
        "error",
        "import timed out after 0.5s",
    )
    assert listed["flujo-iso-good"]["status"] == "ok"
    for args in (["--help"], ["config", "show", "--json"]):
        assert run_flujo(*args, cwd=tmp_path, env=env, timeout=60).returncode == 0, args
    # The environment override names the same setting.
    (tmp_path / "flujo.toml").unlink()
    env["FLUJO__PLUGINS__IMPORT_TIMEOUT_S"] = "0.25"
    proc = run_flujo("plugins", "--json", cwd=tmp_path, env=env, timeout=60)
    hangs = next(p for p in json.loads(proc.stdout) if p["name"] == "flujo-hangs")
    assert hangs["error"] == "import timed out after 0.25s"


@pytest.mark.parametrize("timeout_s", ["30", "0"], ids=["on-a-thread", "inline"])
def test_a_real_ctrl_c_during_a_plugin_import_stops_the_program(
    make_dist: MakeDist, tmp_path: Path, timeout_s: str
) -> None:
    names = _install(make_dist, {"flujo-hangs": HANGS})
    marker = tmp_path / "started"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLUJO")},
        "FLUJO_LOAD_PLUGINS": names,
        "FLUJO__PLUGINS__IMPORT_TIMEOUT_S": timeout_s,
        "HANG_MARKER": str(marker),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "flujo", "plugins"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():  # the import has started (and now hangs)
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the plugin's import never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode in (-signal.SIGINT, 130), (proc.returncode, err)
    assert "flujo-hangs" not in out  # stopped before listing anything


class _ExitingWrapper:
    """A step wrapper that raises ``exc`` when the hook is called, on entry or on exit."""

    def __init__(self, where: str, exc: BaseException) -> None:
        self.where, self.exc = where, exc

    @hookimpl
    def flujo_wrap_step(self, event: Any) -> Any:
        exc = self.exc
        if self.where == "hook":
            raise exc

        @contextlib.contextmanager
        def cm() -> Iterator[None]:
            if self.where == "enter":
                raise exc
            yield
            raise exc

        return cm()


class _ExitingTask:
    """An observer whose background task raises ``exc``."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    @hookimpl
    def flujo_step_completed(self, event: Any, runtime: Any) -> None:
        async def work() -> None:
            raise self.exc

        runtime.tasks.schedule("exits", work)


@pytest.mark.parametrize("exc", [SystemExit(4), _Weird("odd")], ids=["system-exit", "base"])
def test_base_exceptions_in_wrappers_and_background_tasks_are_recorded(
    tmp_path: Path, exc: BaseException
) -> None:
    manager = PluginManager()
    for where in ("hook", "enter", "exit"):
        manager.register(_ExitingWrapper(where, exc), f"flujo-wrap-{where}")
    manager.register(_ExitingTask(exc), "flujo-task")

    async def go() -> tuple[Any, list[str]]:
        runner: Flujo[Any] = Flujo(
            Pipeline([Step.from_callable(str.upper, name="up")]),
            config=FlujoConfig(plugin_manager=manager),
            state=SQLiteBackend(tmp_path / "s.db"),
        )
        result = await runner.run_async("a")
        await runner.aclose()
        return result, sorted(f.name + ": " + f.error for f in runner.runtime.tasks.failures)

    result, failures = asyncio.run(go())
    assert (result.succeeded, result.output) == (True, "A"), result.error
    name = type(exc).__name__
    assert len(failures) == 4, failures
    assert all(name in f for f in failures), failures
