"""The wiring of the ``docker`` and ``e2b`` backends, tested against fakes of their client
libraries: what the backends ask of the libraries, never a real container or cloud sandbox.

No Docker daemon runs here and E2B's cloud is unreachable from tests, so these fakes stand in
for ``docker.DockerClient`` and ``e2b_code_interpreter.AsyncSandbox``: they check what the
backends ask of the libraries (hardening options, no image pull, limits, cleanup) and how they
read the answers. The bootstrap the docker backend runs inside a container is executed for
real, locally, by ``test_docker_bootstrap_runs_for_real_in_a_temp_folder``.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from flujo.domain.interfaces import SandboxLimits
from flujo_sandbox.docker_backend import BOOTSTRAP, DockerSandbox
from flujo_sandbox.e2b_backend import E2BSandbox
from flujo_sandbox.errors import (
    SandboxFileError,
    SandboxLimitError,
    SandboxUnavailableError,
)
from flujo_sandbox.settings import SandboxSettings

# --------------------------------------------------------------------------- docker


class ImageNotFound(Exception):
    """Named like docker.errors.ImageNotFound, which the backend recognises by name."""


class ReadTimeout(Exception):
    """Named like requests' ReadTimeout, which docker-py raises from wait(timeout=...)."""


class FakeContainer:
    def __init__(self, options: dict[str, Any], script: dict[str, Any]) -> None:
        self.options = options
        self.script = script
        self.events: list[str] = []

    def start(self) -> None:
        self.events.append("start")

    def wait(self, timeout: float) -> dict[str, Any]:
        self.events.append(f"wait {timeout}")
        if self.script.get("hang"):
            raise ReadTimeout("Read timed out.")
        return {"StatusCode": self.script.get("status", 0)}

    def kill(self) -> None:
        self.events.append("kill")

    def logs(self, stdout: bool, stderr: bool) -> bytes:
        if stdout:
            payload = json.loads(
                base64.b64decode(self.options["environment"]["FLUJO_SANDBOX_PAYLOAD"])
            )
            arts = json.dumps({"r.txt": base64.b64encode(b"art").decode()})
            return (
                self.script.get("stdout", b"hello\n")
                + b"\n"
                + payload["marker"].encode()
                + arts.encode()
                + b"\n"
            )
        return self.script.get("stderr", b"warn\n")

    def remove(self, force: bool) -> None:
        self.events.append("remove")


class FakeDocker:
    def __init__(self, *, image_present: bool = True, **script: Any) -> None:
        self.image_present = image_present
        self.script = script
        self.created: list[FakeContainer] = []
        self.pulled = False
        self.images = SimpleNamespace(get=self._get_image, pull=self._pull)
        self.containers = SimpleNamespace(create=self._create)

    def _get_image(self, name: str) -> object:
        if not self.image_present:
            raise ImageNotFound(name)
        return object()

    def _pull(self, name: str) -> None:
        self.pulled = True

    def _create(self, **options: Any) -> FakeContainer:
        container = FakeContainer(options, self.script)
        self.created.append(container)
        return container


async def test_docker_wiring_container_is_hardened_and_removed() -> None:
    fake = FakeDocker()
    box = DockerSandbox(SandboxSettings(backend="docker"), client=fake)
    result = await box.exec_code("print('hello')", files={"in.txt": b"x"}, timeout_s=5)
    assert result.ok
    assert result.stdout == "hello\n"
    assert result.stderr == "warn\n"
    assert result.artifacts == {"r.txt": b"art"}
    (container,) = fake.created
    o = container.options
    assert o["user"] == "65534:65534"
    assert o["cap_drop"] == ["ALL"]
    assert o["security_opt"] == ["no-new-privileges"]
    assert o["read_only"] is True
    assert "/work" in o["tmpfs"]
    assert o["network_mode"] == "none"
    assert o["mem_limit"] == "512m"
    assert o["memswap_limit"] == "512m"
    assert o["pids_limit"] == 64
    assert o["nano_cpus"] > 0
    assert container.events == ["start", "wait 5", "remove"]
    assert not fake.pulled


async def test_docker_wiring_timeout_kills_and_removes() -> None:
    fake = FakeDocker(hang=True)
    result = await DockerSandbox(client=fake).exec_code("while True: pass", timeout_s=1)
    assert result.timed_out
    assert not result.ok
    assert fake.created[0].events == ["start", "wait 1", "kill", "remove"]


async def test_docker_wiring_missing_image_is_never_pulled() -> None:
    fake = FakeDocker(image_present=False)
    with pytest.raises(SandboxUnavailableError, match="docker pull"):
        await DockerSandbox(client=fake).exec_code("print(1)")
    assert not fake.pulled
    assert fake.created == []


async def test_docker_wiring_limits_and_payload_caps() -> None:
    fake = FakeDocker(status=3, stdout=b"z" * 5000)
    result = await DockerSandbox(client=fake).exec_code(
        "x", limits=SandboxLimits(memory_mb=64, pids=8, output_bytes=1000, network=True)
    )
    assert result.exit_code == 3
    assert result.truncated
    o = fake.created[0].options
    assert o["mem_limit"] == "64m"
    assert o["pids_limit"] == 8
    assert o["network_mode"] == "bridge"
    with pytest.raises(SandboxFileError, match="at most"):
        await DockerSandbox(client=fake).exec_code("x", files={"big": os.urandom(200_000)})


def test_docker_wiring_constructor_touches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the backend imports no SDK and reaches no daemon: that waits for first use."""
    imported: list[str] = []
    real_import = importlib.import_module

    def recording_import(name: str, package: str | None = None) -> Any:
        imported.append(name)
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", recording_import)
    sandbox = DockerSandbox(SandboxSettings(backend="docker"))
    assert imported == []
    assert sandbox._client is None


def test_docker_bootstrap_runs_for_real_in_a_temp_folder(tmp_path: Path) -> None:
    """The in-container bootstrap, run here with /work replaced by a temp folder."""
    payload = {
        "code": "import sys\nprint(open('in/x.txt').read())\nimport os\nos.makedirs('out')\n"
        "open('out/o.txt','w').write('made')\nsys.exit(4)\n",
        "lang": "python",
        "args": [],
        "files": {"in/x.txt": base64.b64encode(b"input!").decode()},
        "marker": "--MARK--",
        "max_count": 5,
        "max_bytes": 1000,
    }
    script = BOOTSTRAP.replace('"/work"', repr(str(tmp_path))).replace(
        '"/tmp/main.py"', repr(str(tmp_path / "main.py"))
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin"),
        "FLUJO_SANDBOX_PAYLOAD": base64.b64encode(json.dumps(payload).encode()).decode(),
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 4, proc.stderr
    out, _, arts = proc.stdout.rpartition("--MARK--")
    assert "input!" in out
    assert json.loads(arts) == {"o.txt": base64.b64encode(b"made").decode()}


# --------------------------------------------------------------------------- e2b


class CommandExitException(Exception):
    """Named like e2b's exception for a non-zero exit, carrying the output."""

    def __init__(self, stdout: str, stderr: str, exit_code: int) -> None:
        super().__init__("exit")
        self.stdout, self.stderr, self.exit_code = stdout, stderr, exit_code


class TimeoutException(Exception):
    """Named like e2b's timeout exception."""


class FakeE2B:
    """A stand-in for ``AsyncSandbox``: files in a dict, commands scripted."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.files_written: dict[str, bytes] = {}
        self.killed = False
        self.commands_run: list[tuple[str, str, float]] = []
        self.files = SimpleNamespace(write=self._write, list=self._list, read=self._read)
        self.commands = SimpleNamespace(run=self._run)

    async def _write(self, path: str, data: bytes) -> None:
        self.files_written[path] = data

    async def _list(self, path: str) -> list[Any]:
        return [
            SimpleNamespace(name=p.rsplit("/", 1)[1], path=p, type="file")
            for p in self.files_written
            if p.startswith(path + "/")
        ]

    async def _read(self, path: str, format: str) -> bytes:
        return self.files_written[path]

    async def _run(self, cmd: str, cwd: str, timeout: float) -> Any:
        self.commands_run.append((cmd, cwd, timeout))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        self.files_written["/home/user/work/out/a.txt"] = b"A"
        return SimpleNamespace(stdout="hi\n", stderr="", exit_code=0)

    async def kill(self) -> None:
        self.killed = True


def _e2b(
    outcome: Any, monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> tuple[E2BSandbox, list[Any], list[dict[str, Any]]]:
    monkeypatch.setenv("E2B_API_KEY", "k")
    made: list[FakeE2B] = []
    kwargs_seen: list[dict[str, Any]] = []

    async def create(**kwargs: Any) -> FakeE2B:
        kwargs_seen.append(kwargs)
        box = FakeE2B(outcome)
        made.append(box)
        return box

    return E2BSandbox(SandboxSettings(backend="e2b", **settings), create=create), made, kwargs_seen


async def test_e2b_wiring_runs_and_kills_its_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    box, made, kwargs = _e2b(None, monkeypatch)
    result = await box.exec_code("print('hi')", files={"in.txt": b"x"}, timeout_s=3)
    assert result.ok
    assert result.stdout == "hi\n"
    assert result.artifacts == {"a.txt": b"A"}
    assert made[0].killed
    assert made[0].files_written["/home/user/work/in.txt"] == b"x"
    assert made[0].commands_run[0][2] == 3
    assert kwargs[0]["allow_internet_access"] is False
    assert kwargs[0]["api_key"] == "k"


async def test_e2b_wiring_exit_codes_and_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    box, _, _ = _e2b(CommandExitException("o", "Traceback", 3), monkeypatch)
    result = await box.exec_code("import sys; sys.exit(3)")
    assert result.exit_code == 3
    assert result.stderr == "Traceback"
    box, made, _ = _e2b(TimeoutException("slow"), monkeypatch)
    result = await box.exec_code("while True: pass", timeout_s=1)
    assert result.timed_out
    assert made[0].killed


async def test_e2b_wiring_fails_closed_on_limits_it_cannot_enforce(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box, made, _ = _e2b(None, monkeypatch)
    with pytest.raises(SandboxLimitError, match="memory_mb"):
        await box.exec_code("print(1)", limits=SandboxLimits(memory_mb=128))
    assert made == []


async def test_e2b_wiring_stateful_session_reuses_one_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box, made, _ = _e2b(None, monkeypatch, e2b_stateful=True)
    assert box.stateful
    await box.exec_code("print(1)")
    await box.exec_code("print(2)")
    assert len(made) == 1
    assert not made[0].killed
    await box.aclose()
    assert made[0].killed


async def test_e2b_wiring_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("E2B_API_KEY", raising=False)

    async def create(**kwargs: Any) -> Any:
        raise AssertionError("must not be called")

    with pytest.raises(SandboxUnavailableError, match="E2B_API_KEY"):
        await E2BSandbox(create=create).exec_code("print(1)")
