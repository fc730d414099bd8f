"""The ``example_bwrap`` sandbox: Python in a bubblewrap jail, with the limits it can enforce.

What it enforces, and how:

- **network**: off unless ``SandboxLimits(network=True)``: the code gets its own, empty network
  namespace (``bwrap --unshare-net``), so not even loopback reaches the host;
- **memory_mb**: ``RLIMIT_AS`` (address space, so a little stricter than resident memory);
- **cpu_s**: ``RLIMIT_CPU`` (the kernel kills the code when it has used that much CPU time);
- **timeout_s**: wall clock; the whole process group is killed;
- **output_bytes**: stdout and stderr are cut at that many bytes each (``truncated=True``),
  and what is past the limit is read and dropped, never buffered;
- **files**: a fresh working directory per execution, removed afterwards; the code sees only
  it, a private ``/tmp``, and read-only the system's ``/usr``, ``/bin``, ``/lib*`` and the
  Python installation (not the host's home directories, ``/etc`` or projects).

It does **not** limit the number of processes (``RLIMIT_NPROC`` counts per user and does not
bind root), so ``SandboxLimits(pids=...)`` raises :class:`ExampleSandboxError` instead of
pretending. So does a host without ``bwrap``: the sandbox never falls back to running the
code unconfined.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath

from flujo.plugin import ExecutionResult, SandboxLimits, UserError

NAME = "example_bwrap"
DEFAULT_OUTPUT_BYTES = 1_000_000
DEFAULT_TIMEOUT_S = 30.0
_CHUNK = 65536
_NOTICE = "\n[output truncated]"


class ExampleSandboxError(UserError):
    """The sandbox cannot run this code as asked (missing bwrap, a limit it cannot enforce,
    a bad file path, another language); nothing was run."""


def _checked_path(name: str) -> PurePosixPath:
    """``name`` as a path inside the working directory; anything that could leave it is
    refused (the names come from the model, so they are data, never trusted)."""
    path = PurePosixPath(name)
    escapes = path.is_absolute() or any(p in ("", ".", "..") for p in path.parts)
    if not name or "\x00" in name or escapes:
        raise ExampleSandboxError(f"file name {name!r} must be a relative path inside the sandbox")
    return path


def _rlimits(limits: SandboxLimits) -> Callable[[], None]:
    """Run in the child between fork and exec: set the limits bwrap and the code inherit."""

    def apply() -> None:
        if limits.memory_mb is not None:
            size = limits.memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
        if limits.cpu_s is not None:
            seconds = max(1, int(limits.cpu_s + 0.999))
            resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds))

    return apply


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    """Everything ``stream`` says, up to ``cap`` bytes; the rest is read and dropped."""
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(_CHUNK):
        room = cap - len(kept)
        if len(chunk) > room:
            truncated = True
        kept += chunk[: max(room, 0)]
    return bytes(kept), truncated


def _text(data: bytes, truncated: bool) -> str:
    text = data.decode("utf-8", errors="replace")
    return text + _NOTICE if truncated else text


class BwrapSandbox:
    """Runs Python code in bubblewrap (see the module docstring for what it enforces)."""

    stateful = False
    enforced_limits = frozenset({"memory_mb", "cpu_s", "network"})
    """What ``SandboxConformance`` holds it to; ``pids`` is left out, and asking for it raises."""

    def __init__(self, python: str | None = None) -> None:
        # The interpreter running Flujo (resolved past venv symlinks), so the sandbox needs
        # nothing but its installation: ``-I`` keeps the venv's packages out anyway.
        self._python = os.path.realpath(python or sys.executable)
        self._prefix = os.path.realpath(sys.base_prefix) if python is None else None

    def _command(self, workdir: Path, limits: SandboxLimits) -> list[str]:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise ExampleSandboxError(
                f"sandbox {NAME!r} needs bubblewrap (bwrap) on PATH; install it "
                "(apt-get install bubblewrap)"
            )
        if not os.access(self._python, os.X_OK):
            raise ExampleSandboxError(f"sandbox {NAME!r}: cannot run {self._python!r}")
        network = [] if limits.network else ["--unshare-net"]
        system = [
            arg
            for folder in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32")
            for arg in ("--ro-bind-try", folder, folder)
        ]
        python_home = os.path.dirname(os.path.dirname(self._python))
        prefixes = dict.fromkeys(p for p in (python_home, self._prefix) if p)
        return [
            bwrap,
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            *network,
            "--die-with-parent",
            "--new-session",
            *system,
            *(arg for prefix in prefixes for arg in ("--ro-bind", prefix, prefix)),
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
            "--bind",
            str(workdir),
            "/work",
            "--chdir",
            "/work",
            "--setenv",
            "HOME",
            "/work",
            self._python,
            "-I",
            "main.py",
        ]

    async def exec_code(
        self,
        code: str,
        lang: str = "python",
        *,
        files: Mapping[str, bytes] | None = None,
        timeout_s: float | None = None,
        limits: SandboxLimits | None = None,
    ) -> ExecutionResult:
        limits = limits or SandboxLimits()
        if lang != "python":
            raise ExampleSandboxError(f"sandbox {NAME!r} runs only python, not {lang!r}")
        if limits.pids is not None:
            raise ExampleSandboxError(
                f"sandbox {NAME!r} cannot enforce pids={limits.pids}: it has no process limit"
            )
        for name, value in (("memory_mb", limits.memory_mb), ("cpu_s", limits.cpu_s)):
            if value is not None and value <= 0:
                raise ExampleSandboxError(f"{name} must be positive, got {value}")
        timeout = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
        cap = DEFAULT_OUTPUT_BYTES if limits.output_bytes is None else limits.output_bytes
        checked = {_checked_path(name): data for name, data in (files or {}).items()}
        with tempfile.TemporaryDirectory(prefix="flujo-example-sandbox-") as tmp:
            workdir = Path(tmp)
            command = self._command(workdir, limits)
            for path, data in checked.items():
                target = workdir / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            (workdir / "main.py").write_text(code, encoding="utf-8")
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # one process group to kill on timeout
                preexec_fn=_rlimits(limits),
            )
            assert proc.stdout is not None
            assert proc.stderr is not None
            reading = asyncio.gather(
                _read_capped(proc.stdout, cap), _read_capped(proc.stderr, cap), proc.wait()
            )
            timed_out = False
            try:
                (out, out_cut), (err, err_cut), _ = await asyncio.wait_for(
                    asyncio.shield(reading), timeout
                )
            except TimeoutError:
                timed_out = True
            finally:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
            if timed_out:
                (out, out_cut), (err, err_cut), _ = await reading
            duration_ms = (time.monotonic() - started) * 1000.0
        return ExecutionResult(
            stdout=_text(out, out_cut),
            stderr=_text(err, err_cut),
            exit_code=proc.returncode,
            timed_out=timed_out,
            truncated=out_cut or err_cut,
            duration_ms=duration_ms,
            limits={
                "memory_mb": limits.memory_mb,
                "cpu_s": limits.cpu_s,
                "output_bytes": cap,
                "network": limits.network,
                "timeout_s": timeout,
            },
            backend=NAME,
        )
