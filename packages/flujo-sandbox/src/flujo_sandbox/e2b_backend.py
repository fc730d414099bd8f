"""The ``e2b`` backend (``pip install 'flujo-sandbox[e2b]'``): E2B's cloud micro-VMs.

Every execution gets a new E2B sandbox that is killed afterwards, unless ``[sandbox]
e2b_stateful = true``: then one sandbox is kept and reused (files persist between executions,
``stateful = True``) until :meth:`E2BSandbox.aclose`. Network access is switched off at
sandbox creation unless ``network=True`` is asked for. E2B sizes a VM by its template, so a
per-execution ``memory_mb``, ``cpu_s`` or ``pids`` cannot be enforced: asking for one raises
:class:`SandboxLimitError` (fail closed); the VM boundary, the timeout and the output cap are.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from flujo.domain.interfaces import ExecutionResult, SandboxLimits
from flujo_sandbox._common import (
    Intake,
    reported,
    truncate_text,
)
from flujo_sandbox.errors import SandboxLimitError, SandboxUnavailableError
from flujo_sandbox.settings import SandboxSettings

__all__ = ["WORKDIR", "E2BSandbox"]

WORKDIR = "/home/user/work"


class E2BSandbox:
    """Runs code in E2B sandboxes.

    :param settings: ``[sandbox]`` settings (``e2b_*`` keys, caps).
    :param create: ``async (**kwargs) -> sandbox``; default ``e2b_code_interpreter.AsyncSandbox
        .create``. Tests pass a fake.
    """

    name = "e2b"
    enforced_limits = frozenset({"network"})
    """Network only: ``memory_mb``, ``cpu_s`` and ``pids`` raise (see ``SandboxConformance``)."""
    languages: tuple[str, ...] = ("python", "bash")

    def __init__(
        self,
        settings: SandboxSettings | None = None,
        *,
        create: Callable[..., Any] | None = None,
    ) -> None:
        self.settings = settings or SandboxSettings(backend="e2b")
        self._create = create
        self.stateful = self.settings.e2b_stateful
        self._session: Any = None

    def _factory(self) -> Callable[..., Any]:
        if self._create is None:
            try:
                module = importlib.import_module("e2b_code_interpreter")
            except ImportError:
                raise SandboxUnavailableError(
                    "the e2b backend needs e2b-code-interpreter: pip install 'flujo-sandbox[e2b]'"
                ) from None
            self._create = module.AsyncSandbox.create
        return self._create

    async def _open(self, network: bool) -> Any:
        key = os.environ.get(self.settings.e2b_api_key_env)
        if not key:
            raise SandboxUnavailableError(
                f"the e2b backend needs an API key in ${self.settings.e2b_api_key_env}"
            )
        kwargs: dict[str, Any] = {"api_key": key, "allow_internet_access": network}
        if self.settings.e2b_template:
            kwargs["template"] = self.settings.e2b_template
        return await self._factory()(**kwargs)

    async def aclose(self) -> None:
        """Kill the kept sandbox of a stateful session."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.kill()

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
        """Run ``code`` in an E2B sandbox (see ``SandboxProtocol.exec_code``)."""
        cfg = self.settings.limits
        defaults = SandboxLimits(cfg.memory_mb, cfg.cpu_s, cfg.pids, cfg.output_bytes, cfg.network)
        intake = Intake(self.settings, "e2b", self.languages, defaults)
        lang, enforced, clean, timeout = intake.check(lang, files, timeout_s, limits)
        for key in ("memory_mb", "cpu_s", "pids"):
            if getattr(enforced, key) is not None:
                raise SandboxLimitError(
                    f"the e2b backend cannot enforce {key} per execution (E2B sizes VMs by "
                    "template); leave it unset"
                )
        started = time.perf_counter()
        if self.stateful:
            if self._session is None:
                self._session = await self._open(enforced.network)
            box = self._session
        else:
            box = await self._open(enforced.network)
        try:
            result = await self._run(box, code, lang, clean, timeout, enforced)
        finally:
            if not self.stateful:
                await box.kill()
        result.duration_ms = (time.perf_counter() - started) * 1000
        result.limits = {
            "timeout_s": timeout,
            "output_bytes": enforced.output_bytes,
            "network": enforced.network,
        }
        return result

    async def _run(
        self,
        box: Any,
        code: str,
        lang: str,
        files: Mapping[str, bytes],
        timeout: float,
        limits: SandboxLimits,
    ) -> ExecutionResult:
        for name, content in files.items():
            await box.files.write(f"{WORKDIR}/{name}", content)
        script = f"/tmp/flujo-main.{'py' if lang == 'python' else 'sh'}"
        await box.files.write(script, code.encode("utf-8"))
        command = f"python3 {script}" if lang == "python" else f"bash {script}"
        timed_out = False
        exit_code: int | None
        try:
            done = await box.commands.run(command, cwd=WORKDIR, timeout=timeout)
            stdout, stderr, exit_code = done.stdout, done.stderr, done.exit_code
        except Exception as exc:
            # E2B reports a non-zero exit as CommandExitException (carrying the output) and a
            # timeout as TimeoutException; any other error is the service's, and propagates.
            kind = type(exc).__name__
            if kind == "CommandExitException":
                stdout, stderr = exc.stdout, exc.stderr  # type: ignore[attr-defined]
                exit_code = exc.exit_code  # type: ignore[attr-defined]
            elif kind == "TimeoutException":
                stdout, stderr, exit_code, timed_out = "", "", None, True
            else:
                raise
        limit = limits.output_bytes or self.settings.limits.output_bytes
        out, cut_out = truncate_text(stdout or "", limit)
        err, cut_err = truncate_text(stderr or "", limit)
        artifacts = await self._artifacts(box)
        return ExecutionResult(
            stdout=out,
            stderr=err,
            exit_code=exit_code,
            timed_out=timed_out,
            truncated=cut_out or cut_err,
            artifacts=artifacts,
            backend=self.name,
        )

    async def _artifacts(self, box: Any) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        total = 0
        try:
            entries = await box.files.list(f"{WORKDIR}/out")
        except Exception as exc:
            # No out/ folder is the usual case; E2B raises NotFoundException for it.
            if type(exc).__name__ == "NotFoundException":
                return found
            raise
        for entry in entries:
            if str(getattr(entry, "type", "file")).lower().endswith("dir"):
                continue
            if len(found) >= self.settings.max_artifacts:
                break
            data = await box.files.read(entry.path, format="bytes")
            data = bytes(data)
            if total + len(data) > self.settings.max_artifacts_bytes:
                continue
            total += len(data)
            found[entry.name] = data
        return found
