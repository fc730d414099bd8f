"""The ``docker`` backend (``pip install 'flujo-sandbox[docker]'``): hardened containers.

Each execution is a new container: non-root user ``65534``, every capability dropped,
``no-new-privileges``, a read-only root with tmpfs ``/work`` and ``/tmp``, no network,
memory (swap included), pids and CPU limits, stdout and stderr kept apart. The image is never
pulled: a missing image is a :class:`SandboxUnavailableError` telling you to pull it.

Code and files travel in one environment variable read by a small bootstrap inside the
container (a read-only root and a tmpfs work folder rule out ``put_archive``), so code plus
files are capped at :data:`MAX_PAYLOAD_BYTES`. Artifacts come back after a marker line on
stdout that the host generates per execution.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from flujo.domain.interfaces import ExecutionResult, SandboxLimits
from flujo_sandbox._common import (
    Intake,
    OutputBuffer,
    reported,
)
from flujo_sandbox.errors import SandboxFileError, SandboxUnavailableError
from flujo_sandbox.settings import SandboxSettings

__all__ = ["BOOTSTRAP", "DEFAULT_LIMITS", "MAX_PAYLOAD_BYTES", "DockerSandbox"]

DEFAULT_LIMITS = SandboxLimits(memory_mb=512, cpu_s=30.0, pids=64, output_bytes=1_000_000)
MAX_PAYLOAD_BYTES = 96 * 1024
"""Code plus base64 files must fit one environment string (the kernel caps it at 128 KiB)."""

BOOTSTRAP = r"""
import base64, json, os, stat, subprocess, sys
p = json.loads(base64.b64decode(os.environ.pop("FLUJO_SANDBOX_PAYLOAD")))
os.chdir("/work")
for name, data in p["files"].items():
    folder = os.path.dirname(name)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(name, "wb") as fh:
        fh.write(base64.b64decode(data))
script = "/tmp/main.py" if p["lang"] == "python" else "/tmp/main.sh"
with open(script, "w") as fh:
    fh.write(p["code"])
cmd = [sys.executable, "-s", script] if p["lang"] == "python" else ["bash", script]
rc = subprocess.call(cmd + p["args"])
arts, total = {}, 0
for root, dirs, names in os.walk("out", followlinks=False):
    for n in sorted(names):
        path = os.path.join(root, n)
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or len(arts) >= p["max_count"]:
            continue
        if total + st.st_size > p["max_bytes"]:
            continue
        with open(path, "rb") as fh:
            data = fh.read()
        total += len(data)
        arts[os.path.relpath(path, "out")] = base64.b64encode(data).decode()
sys.stdout.flush()
sys.stdout.write("\n" + p["marker"] + json.dumps(arts) + "\n")
sys.stdout.flush()
sys.exit(rc)
"""


class DockerSandbox:
    """Runs code in a fresh hardened container per execution (needs a Docker daemon).

    :param settings: ``[sandbox]`` settings (``docker_image``, limits, caps).
    :param client: a ``docker.DockerClient``; default ``docker.from_env()`` on first use.
    """

    name = "docker"
    stateful = False
    enforced_limits = frozenset({"memory_mb", "cpu_s", "pids", "network"})
    """The limits this backend enforces (see ``SandboxConformance``)."""
    languages: tuple[str, ...] = ("python", "bash")

    def __init__(self, settings: SandboxSettings | None = None, *, client: Any = None) -> None:
        self.settings = settings or SandboxSettings(backend="docker")
        self._client = client

    def _docker(self) -> Any:
        if self._client is None:
            try:
                docker = importlib.import_module("docker")
            except ImportError:
                raise SandboxUnavailableError(
                    "the docker backend needs the docker SDK: pip install 'flujo-sandbox[docker]'"
                ) from None
            try:
                self._client = docker.from_env()
            except docker.errors.DockerException as exc:
                raise SandboxUnavailableError(f"cannot reach the Docker daemon: {exc}") from None
        return self._client

    def _defaults(self) -> SandboxLimits:
        cfg = self.settings.limits
        return SandboxLimits(
            cfg.memory_mb if cfg.memory_mb is not None else DEFAULT_LIMITS.memory_mb,
            cfg.cpu_s if cfg.cpu_s is not None else DEFAULT_LIMITS.cpu_s,
            cfg.pids if cfg.pids is not None else DEFAULT_LIMITS.pids,
            cfg.output_bytes,
            cfg.network,
        )

    def container_options(
        self, limits: SandboxLimits, payload: str, timeout: float
    ) -> dict[str, Any]:
        """The ``containers.create`` keyword arguments (public so tests can check hardening)."""
        memory = f"{limits.memory_mb}m"
        cpu = int(limits.cpu_s or timeout) + 1
        return {
            "image": self.settings.docker_image,
            "command": ["python3", "-c", BOOTSTRAP],
            "user": "65534:65534",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "read_only": True,
            "tmpfs": {
                "/work": "rw,nosuid,nodev,size=256m,mode=1777",
                "/tmp": "rw,nosuid,nodev,size=64m,mode=1777",
            },
            "network_mode": "bridge" if limits.network else "none",
            "mem_limit": memory,
            "memswap_limit": memory,
            "pids_limit": limits.pids,
            "nano_cpus": 1_000_000_000,
            "ulimits": [
                {"name": "cpu", "soft": cpu, "hard": cpu},
                {
                    "name": "fsize",
                    "soft": self.settings.max_write_bytes,
                    "hard": self.settings.max_write_bytes,
                },
                {"name": "core", "soft": 0, "hard": 0},
            ],
            "working_dir": "/work",
            "environment": {"FLUJO_SANDBOX_PAYLOAD": payload, "HOME": "/work"},
            "detach": True,
            "labels": {"flujo-sandbox": "1"},
        }

    @reported
    async def exec_code(
        self,
        code: str,
        lang: str = "python",
        *,
        files: Mapping[str, bytes] | None = None,
        timeout_s: float | None = None,
        limits: SandboxLimits | None = None,
    ) -> ExecutionResult:
        """Run ``code`` in a new container (see ``SandboxProtocol.exec_code``)."""
        intake = Intake(self.settings, "docker", self.languages, self._defaults())
        lang, enforced, clean, timeout = intake.check(lang, files, timeout_s, limits)
        marker = f"--flujo-sandbox-artifacts-{secrets.token_hex(8)}--"
        body = json.dumps(
            {
                "code": code,
                "lang": lang,
                "args": [],
                "files": {n: base64.b64encode(c).decode() for n, c in clean.items()},
                "marker": marker,
                "max_count": self.settings.max_artifacts,
                "max_bytes": self.settings.max_artifacts_bytes,
            }
        )
        payload = base64.b64encode(body.encode()).decode()
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise SandboxFileError(
                f"the docker backend takes at most {MAX_PAYLOAD_BYTES} bytes of code and files "
                f"(encoded); got {len(payload)}"
            )
        started = time.perf_counter()
        options = self.container_options(enforced, payload, timeout)
        result = await asyncio.to_thread(self._run, options, timeout, enforced, marker)
        result.duration_ms = (time.perf_counter() - started) * 1000
        result.limits = {
            "timeout_s": timeout,
            "memory_mb": enforced.memory_mb,
            "cpu_s": enforced.cpu_s,
            "pids": enforced.pids,
            "output_bytes": enforced.output_bytes,
            "network": enforced.network,
        }
        return result

    def _run(
        self, options: dict[str, Any], timeout: float, limits: SandboxLimits, marker: str
    ) -> ExecutionResult:
        client = self._docker()
        image = options["image"]
        try:
            client.images.get(image)
        except Exception as exc:
            if type(exc).__name__ == "ImageNotFound":
                raise SandboxUnavailableError(
                    f"docker image {image!r} is not present; pull it first: docker pull {image}"
                ) from None
            raise
        container = client.containers.create(**options)
        timed_out = False
        try:
            container.start()
            try:
                status = container.wait(timeout=timeout)
                exit_code: int | None = int(status.get("StatusCode", 1))
            except Exception as exc:
                # docker-py raises requests' ReadTimeout (or ConnectionError) when wait() runs
                # out of time; only a timeout is a result, anything else is a real failure.
                if "Timeout" not in type(exc).__name__ and "timed out" not in str(exc).lower():
                    raise
                timed_out = True
                exit_code = None
                container.kill()
            raw_out = container.logs(stdout=True, stderr=False) or b""
            raw_err = container.logs(stdout=False, stderr=True) or b""
        finally:
            container.remove(force=True)
        artifacts: dict[str, bytes] = {}
        cut = raw_out.rfind(b"\n" + marker.encode())
        if cut >= 0:
            tail = raw_out[cut + 1 + len(marker) :]
            raw_out = raw_out[:cut]
            try:
                artifacts = {k: base64.b64decode(v) for k, v in json.loads(tail).items()}
            except (ValueError, AttributeError):
                artifacts = {}
        limit = limits.output_bytes or DEFAULT_LIMITS.output_bytes or 1_000_000
        out, err = OutputBuffer(limit), OutputBuffer(limit)
        out.feed(raw_out)
        err.feed(raw_err)
        return ExecutionResult(
            stdout=out.text(),
            stderr=err.text(),
            exit_code=exit_code,
            timed_out=timed_out,
            truncated=out.truncated or err.truncated,
            artifacts=artifacts,
            backend=self.name,
        )
