"""The ``local`` backend: isolation on one Linux machine with bubblewrap, no daemon.

Each execution runs in fresh user, pid, network, ipc, uts (and cgroup) namespaces, with
``/usr`` read-only, a private ``/tmp``, a private work folder at ``/work``, no network, an
empty environment and no capabilities. Resource limits are rlimits set *inside* the namespace
by ``prlimit`` just before the code starts.

Why the uid switch when the host runs as root: the kernel does not apply ``RLIMIT_NPROC`` to
a process with ``CAP_SYS_ADMIN``/``CAP_SYS_RESOURCE`` in the initial user namespace, and a
process tree started by root keeps counting against root's (unlimited) budget even after being
mapped to another uid inside a user namespace. A fork bomb would then run free. So on a root
host bubblewrap itself is started as an unprivileged uid (``setpriv --reuid``, with every
capability and the bounding set dropped and ``no_new_privs``); from there the rlimits bind.
:func:`probe` checks that this really holds and the backend refuses to run otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flujo.domain.interfaces import ExecutionResult, SandboxLimits
from flujo_sandbox._common import (
    Intake,
    OutputBuffer,
    check_text,
    collect_artifacts,
    reported,
    write_files,
)
from flujo_sandbox.errors import SandboxLimitError, SandboxUnavailableError
from flujo_sandbox.settings import SandboxSettings

__all__ = ["DEFAULT_LIMITS", "LocalProbe", "LocalSandbox", "probe"]

_log = logging.getLogger("flujo_sandbox.local")

DEFAULT_LIMITS = SandboxLimits(memory_mb=512, cpu_s=30.0, pids=64, output_bytes=1_000_000)
"""What ``local`` enforces for a limit nobody set."""

TMP_BYTES = 64 * 1024 * 1024
"""Size of the private ``/tmp`` (a tmpfs, so it is memory, not disk)."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
_BWRAP_ENV = {"PATH": "/usr/bin:/bin"}
"""The whole environment bubblewrap (and setpriv, prlimit) are started with."""


def _which(name: str) -> str | None:
    # Look in the system folders too: a venv's PATH may not include /usr/bin.
    return shutil.which(name) or shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")


def _default_python(configured: str | None) -> str:
    if configured:
        return configured
    if os.path.exists("/usr/bin/python3"):
        return "/usr/bin/python3"
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


@dataclass(slots=True)
class LocalProbe:
    """What :func:`probe` found: whether ``local`` can run here, and why (not)."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    languages: tuple[str, ...] = ()


_probe_cache: dict[tuple[str, int, int, str], LocalProbe] = {}
_probe_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class _Tools:
    bwrap: str
    prlimit: str
    setpriv: str | None
    python: str
    bash: str | None
    bwrap_flags: frozenset[str]


def _find_tools(settings: SandboxSettings) -> tuple[_Tools | None, list[str]]:
    problems: list[str] = []
    if not sys.platform.startswith("linux"):
        return None, [f"the local sandbox needs Linux (this is {sys.platform})"]
    bwrap = _which("bwrap")
    if bwrap is None:
        problems.append(
            "bubblewrap (bwrap) is not installed: apt-get install bubblewrap "
            "(or dnf install bubblewrap)"
        )
    prlimit = _which("prlimit")
    if prlimit is None:
        problems.append("prlimit (util-linux) is not installed: apt-get install util-linux")
    setpriv = _which("setpriv")
    if os.geteuid() == 0 and setpriv is None:
        problems.append(
            "running as root needs setpriv (util-linux) to start bubblewrap as an "
            "unprivileged uid; without it a fork bomb could not be contained"
        )
    python = _default_python(settings.python)
    if not os.access(python, os.X_OK):
        problems.append(f"python interpreter {python!r} is not executable ([sandbox] python)")
    bash = next((p for p in ("/usr/bin/bash", "/bin/bash") if os.access(p, os.X_OK)), None)
    if problems or bwrap is None or prlimit is None:
        return None, problems
    try:
        help_text = subprocess.run(
            [bwrap, "--help"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, [f"cannot run bwrap: {exc}"]
    flags = frozenset(re.findall(r"(--[a-z0-9-]+)", help_text))
    for needed in (
        "--die-with-parent",
        "--unshare-user",
        "--clearenv",
        "--new-session",
        "--args",
    ):
        if needed not in flags:
            problems.append(f"bwrap is too old: it lacks {needed} (need bubblewrap >= 0.5)")
    if problems:
        return None, problems
    return _Tools(bwrap, prlimit, setpriv, python, bash, flags), []


def probe(settings: SandboxSettings | None = None, *, refresh: bool = False) -> LocalProbe:
    """Check, once per interpreter/uid, that ``local`` can run *and contain* code here.

    Runs a tiny program in a real sandbox and checks it ran as a non-root uid with the process
    limit in place. Cached; ``refresh=True`` checks again.
    """
    settings = settings or SandboxSettings()
    key = (_default_python(settings.python), settings.run_as_uid, os.geteuid(), settings.cgroups)
    with _probe_lock:
        if not refresh and key in _probe_cache:
            return _probe_cache[key]
        result = _probe_uncached(settings)
        _probe_cache[key] = result
        return result


def _probe_uncached(settings: SandboxSettings) -> LocalProbe:
    tools, problems = _find_tools(settings)
    details: dict[str, Any] = {"euid": os.geteuid()}
    if tools is None:
        return LocalProbe(False, problems, details)
    details.update(
        bwrap=tools.bwrap,
        setpriv=tools.setpriv,
        prlimit=tools.prlimit,
        python=tools.python,
        bash=tools.bash,
        run_as_uid=settings.run_as_uid if os.geteuid() == 0 else os.geteuid(),
    )
    check = (
        "import os, resource\nprint(os.getuid(), resource.getrlimit(resource.RLIMIT_NPROC)[0])\n"
    )
    with tempfile.TemporaryDirectory(prefix="flujo-sandbox-probe-") as tmp:
        top = Path(tmp)
        layout = _Layout.create(top, settings, tools)
        (layout.code / "main.py").write_text(check, encoding="utf-8")
        limits = DEFAULT_LIMITS
        command = _command(tools, settings, layout, "python", limits, {}, (), timeout_s=10)
        try:
            with _launch(command) as (argv, fd):
                proc = subprocess.run(
                    argv,
                    capture_output=True,
                    text=True,
                    timeout=20,
                    env=_BWRAP_ENV,
                    cwd="/",
                    pass_fds=(fd,),
                )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return LocalProbe(False, [f"running bubblewrap failed: {exc}"], details)
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        hint = ""
        if "namespace" in err[0].lower() or "permission" in err[0].lower():
            hint = (
                " (user namespaces are not available to this user: enable them, e.g. "
                "sysctl kernel.unprivileged_userns_clone=1 or "
                "kernel.apparmor_restrict_unprivileged_userns=0, or run in a VM/container "
                "that allows them)"
            )
        return LocalProbe(False, [f"bubblewrap cannot create a sandbox: {err[0]}{hint}"], details)
    try:
        uid_text, nproc_text = proc.stdout.split()
        uid, nproc = int(uid_text), int(nproc_text)
    except ValueError:
        return LocalProbe(False, [f"unexpected probe output {proc.stdout!r}"], details)
    if uid == 0 or (os.geteuid() == 0 and tools.setpriv is None):
        return LocalProbe(
            False,
            ["the sandboxed code ran as uid 0, so the process limit would not bind; refusing"],
            details,
        )
    if nproc != (DEFAULT_LIMITS.pids or 0) + 1:
        return LocalProbe(False, [f"the process limit was not applied (got {nproc})"], details)
    languages = ("python", "bash") if tools.bash else ("python",)
    details["cgroups"], details["cgroups_note"] = _cgroups_usable()
    if settings.cgroups == "require" and not details["cgroups"]:
        return LocalProbe(
            False, [f'[sandbox] cgroups = "require": {details["cgroups_note"]}'], details
        )
    return LocalProbe(True, [], details, languages)


@dataclass(frozen=True, slots=True)
class _Layout:
    """One execution's host folders: ``top`` (0711) holding ``work`` and ``code``."""

    top: Path
    work: Path
    code: Path
    uid: int | None

    @classmethod
    def create(cls, top: Path, settings: SandboxSettings, tools: _Tools) -> _Layout:
        uid = settings.run_as_uid if os.geteuid() == 0 else None
        # Traversable but not listable: bubblewrap, running as `uid`, must reach the binds.
        os.chmod(top, 0o711)
        work = top / "work"
        code = top / "code"
        work.mkdir(mode=0o700)
        code.mkdir(mode=0o755)
        if uid is not None:
            os.chown(work, uid, uid)
        return cls(top, work, code, uid)


CGROUP_ROOT = Path("/sys/fs/cgroup")
"""Where cgroup v1 controllers are mounted (``memory/`` and ``pids/``)."""


@dataclass(frozen=True, slots=True)
class _Cgroup:
    """One execution's cgroups (v1 ``memory`` and ``pids``): totals over all its processes.

    rlimits are per process, so without this a program that forks ``pids`` children could
    hold ``pids x memory_mb``. The cgroup caps the sum. Processes join it through a tiny
    ``sh`` that writes its own pid into ``cgroup.procs`` and then execs the sandbox command,
    so every process of the sandbox is born inside.
    """

    memory: Path
    pids: Path

    @classmethod
    def create(cls, memory_bytes: int, pids: int) -> _Cgroup:
        name = f"flujo-sandbox-{uuid.uuid4().hex[:16]}"
        memory = CGROUP_ROOT / "memory" / name
        pid_dir = CGROUP_ROOT / "pids" / name
        memory.mkdir()
        try:
            pid_dir.mkdir()
        except OSError:
            memory.rmdir()
            raise
        group = cls(memory, pid_dir)
        try:
            (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
            swap = memory / "memory.memsw.limit_in_bytes"
            if swap.exists():
                swap.write_text(str(memory_bytes))
            (pid_dir / "pids.max").write_text(str(pids))
        except OSError:
            group.remove()
            raise
        return group

    def join_prefix(self) -> list[str]:
        # `unset PWD`: the shell exports its working folder, and what it execs (bubblewrap,
        # pid 1 of the sandbox) would show it in /proc/1/environ.
        script = (
            'unset PWD OLDPWD; m="$1"; p="$2"; shift 2; '
            'echo $$ > "$m" && echo $$ > "$p" && exec "$@"'
        )
        return [
            "/bin/sh",
            "-c",
            script,
            "sh",
            str(self.memory / "cgroup.procs"),
            str(self.pids / "cgroup.procs"),
        ]

    def oom_kills(self) -> int:
        """Processes the kernel killed for going over the memory total."""
        try:
            text = (self.memory / "memory.oom_control").read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def remove(self) -> None:
        """Delete both cgroups (empty once the sandbox's processes are gone)."""
        for folder in (self.memory, self.pids):
            for _ in range(1000):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # Exited processes leave the cgroup a moment after they are reaped
                    # (usually well under a millisecond): poll briefly, up to about 1 s.
                    time.sleep(0.001)
            else:
                _log.warning("could not remove cgroup %s", folder)


def _cgroups_usable() -> tuple[bool, str]:
    """Whether v1 memory+pids cgroups can be made and limited here (tried for real)."""
    if not (CGROUP_ROOT / "memory").is_dir() or not (CGROUP_ROOT / "pids").is_dir():
        return False, "no cgroup v1 memory and pids controllers at /sys/fs/cgroup"
    try:
        _Cgroup.create(64 * 1024 * 1024, 8).remove()
    except OSError as exc:
        return False, f"cannot create cgroups: {exc.strerror or exc}"
    return True, "cgroup v1 memory and pids controllers"


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for path in _SYSTEM_LINKS:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            args += ["--symlink", os.readlink(path), path]
        elif stat.S_ISDIR(info.st_mode):
            args += ["--ro-bind", path, path]
    return args


@dataclass(frozen=True, slots=True)
class _Command:
    """One execution's command, in three parts.

    ``options`` (bubblewrap's, which name host folders) are handed to bubblewrap through a
    file descriptor (``--args FD``) instead of its command line: bubblewrap's pid 1 stays
    visible inside the sandbox in ``/proc/1/cmdline``, and host paths there would tell the
    code where it runs. bubblewrap closes the descriptor after reading it.
    """

    launcher: list[str]
    """``setpriv ...`` (on a root host) and bubblewrap itself."""
    options: list[str]
    """bubblewrap's options (mounts, environment, namespaces)."""
    program: list[str]
    """``prlimit ... python /code/main.py ARGS``: what runs inside."""

    def with_prefix(self, prefix: list[str]) -> _Command:
        """The same command started through ``prefix`` (e.g. joining a cgroup)."""
        return _Command(prefix + self.launcher, self.options, self.program)


@contextlib.contextmanager
def _launch(command: _Command) -> Iterator[tuple[list[str], int]]:
    """The argv to start and the descriptor holding bubblewrap's options (pass it on)."""
    data = b"".join(os.fsencode(option) + b"\0" for option in command.options)
    # A memfd never touches the disk; a pipe could block on large option lists.
    fd = os.memfd_create("flujo-sandbox-args", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        yield [*command.launcher, "--args", str(fd), "--", *command.program], fd
    finally:
        os.close(fd)


def _command(
    tools: _Tools,
    settings: SandboxSettings,
    layout: _Layout,
    lang: str,
    limits: SandboxLimits,
    environment: Mapping[str, str],
    arguments: Sequence[str],
    *,
    timeout_s: float,
) -> _Command:
    launcher: list[str] = []
    if layout.uid is not None and tools.setpriv is not None:
        launcher += [
            tools.setpriv,
            f"--reuid={layout.uid}",
            f"--regid={layout.uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]
    launcher.append(tools.bwrap)
    options = [
        "--unshare-user",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--hostname",
        "sandbox",
        "--cap-drop",
        "ALL",
    ]
    if "--disable-userns" in tools.bwrap_flags:
        options.append("--disable-userns")
    options += _system_binds()
    python_real = os.path.realpath(tools.python)
    if lang == "python" and not python_real.startswith("/usr/"):
        # An interpreter outside /usr (pyenv, a build): expose its installation only.
        prefix = str(Path(python_real).parents[1])
        options += ["--ro-bind", prefix, prefix]
    options += ["--proc", "/proc", "--dev", "/dev"]
    if "--size" in tools.bwrap_flags:
        options += ["--size", str(TMP_BYTES)]
    options += ["--tmpfs", "/tmp"]
    options += ["--bind", str(layout.work), "/work", "--ro-bind", str(layout.code), "/code"]
    options += ["--chdir", "/work"]
    env = {
        "PATH": _SANDBOX_PATH,
        "HOME": "/work",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": "/work",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(environment)
    for key, value in env.items():
        options += ["--setenv", key, value]
    memory = (limits.memory_mb or 0) * 1024 * 1024
    cpu = math.ceil(limits.cpu_s or timeout_s)
    # +1 process: bubblewrap's init (pid 1 of the namespace) counts against the limit too.
    pids = (limits.pids or 1) + 1
    program = [
        tools.prlimit,
        f"--nproc={pids}",
        f"--as={memory}",
        f"--cpu={cpu}:{cpu + 1}",
        f"--fsize={settings.max_write_bytes}",
        "--nofile=256",
        "--core=0",
        "--",
    ]
    if lang == "python":
        program += [tools.python, "-s", "/code/main.py", *arguments]
    else:
        program += [tools.bash or "/bin/bash", "/code/main.sh", *arguments]
    return _Command(launcher, options, program)


def _remove_tree(path: Path) -> None:
    """Delete an execution's folder even if the code made parts of it unreadable.

    The code may have chmod-ed its folders to 000 (that stops a non-root host from listing
    them), so every folder is given back to us first. The sandbox is gone by now, so nothing
    can swap a folder for a symlink between the check and the chmod.
    """
    stack = [str(path)]
    while stack:
        folder = stack.pop()
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)
        try:
            entries = os.scandir(folder)
        except OSError:
            continue
        with entries:
            stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
    try:
        shutil.rmtree(path)
    except OSError as exc:
        # Leaving a temp folder behind must not turn the code's result into an error.
        _log.warning("could not remove the sandbox folder %s: %s", path, exc)


async def _pump(stream: asyncio.StreamReader | None, buffer: OutputBuffer) -> None:
    if stream is None:
        return
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return
        buffer.feed(chunk)


class LocalSandbox:
    """Runs code in a bubblewrap sandbox on this machine (Linux, no daemon, no root needed).

    Supports ``python`` and ``bash``. Each execution gets a fresh, empty work folder: files
    written by one execution are gone for the next (``stateful = False``). Artifacts are the
    regular files the code leaves under ``out/``. ``network=True`` is refused (fail closed).

    :param settings: the ``[sandbox]`` settings (limits, caps, interpreter, uid).
    :raises SandboxUnavailableError: from :meth:`exec_code` when bubblewrap, user namespaces
        or (on a root host) ``setpriv`` are missing; see :func:`probe`.
    """

    name = "local"
    stateful = False
    enforced_limits = frozenset({"memory_mb", "cpu_s", "pids", "network"})
    """The limits this backend enforces (see ``SandboxConformance``)."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.settings = settings or SandboxSettings(backend="local")

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages this machine can run in the sandbox (probes on first use)."""
        return probe(self.settings).languages or ("python", "bash")

    def default_limits(self) -> SandboxLimits:
        """The limits an execution gets when the caller sets none (config, else built-in)."""
        cfg = self.settings.limits
        return SandboxLimits(
            memory_mb=cfg.memory_mb if cfg.memory_mb is not None else DEFAULT_LIMITS.memory_mb,
            cpu_s=cfg.cpu_s if cfg.cpu_s is not None else DEFAULT_LIMITS.cpu_s,
            pids=cfg.pids if cfg.pids is not None else DEFAULT_LIMITS.pids,
            output_bytes=cfg.output_bytes,
            network=cfg.network,
        )

    @reported
    async def exec_code(
        self,
        code: str,
        lang: str = "python",
        *,
        files: Mapping[str, bytes] | None = None,
        timeout_s: float | None = None,
        limits: SandboxLimits | None = None,
        environment: Mapping[str, str] | None = None,
        arguments: Sequence[str] = (),
    ) -> ExecutionResult:
        """Run ``code`` in a fresh sandbox; see :class:`~flujo.domain.interfaces.SandboxProtocol`.

        ``environment`` and ``arguments`` (used by the sidecar's contract) set variables and
        ``sys.argv[1:]``; nothing of the host's environment is passed.
        """
        report = await asyncio.to_thread(probe, self.settings)
        if not report.ok:
            raise SandboxUnavailableError(
                "local sandbox unavailable: " + "; ".join(report.problems)
            )
        intake = Intake(self.settings, "local", report.languages, self.default_limits())
        lang, enforced, clean_files, timeout = intake.check(lang, files, timeout_s, limits)
        if enforced.network:
            raise SandboxLimitError(
                "the local sandbox cannot grant network access (network=True); use another "
                "backend or leave network off"
            )
        check_text(code, "the code")
        env = dict(environment or {})
        for key, value in env.items():
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                raise SandboxLimitError(f"invalid environment variable {key!r}")
            check_text(value, f"environment variable {key}", nul=False)
        arguments = [
            check_text(arg, f"argument {i + 1}", nul=False) for i, arg in enumerate(arguments)
        ]
        tools, _ = _find_tools(self.settings)
        assert tools is not None  # the probe above succeeded with the same settings

        started = time.perf_counter()
        cgroup: _Cgroup | None = None
        top = Path(tempfile.mkdtemp(prefix="flujo-sandbox-", dir=self.settings.work_root))
        try:
            layout = _Layout.create(top, self.settings, tools)
            write_files(layout.work, clean_files)
            if layout.uid is not None:
                for folder, dirs, names in os.walk(layout.work):
                    for entry in (*dirs, *names):
                        os.lchown(os.path.join(folder, entry), layout.uid, layout.uid)
            script = "main.py" if lang == "python" else "main.sh"
            (layout.code / script).write_text(code, encoding="utf-8")
            command = _command(
                tools, self.settings, layout, lang, enforced, env, arguments, timeout_s=timeout
            )
            if self.settings.cgroups != "off" and report.details.get("cgroups"):
                try:
                    cgroup = _Cgroup.create(
                        (enforced.memory_mb or 0) * 1024 * 1024,
                        # + the sh/setpriv/bubblewrap monitor and the namespace's pid 1
                        (enforced.pids or 1) + 2,
                    )
                except OSError as exc:
                    if self.settings.cgroups == "require":
                        raise SandboxLimitError(f"cannot create the cgroup: {exc}") from None
                    _log.warning("no cgroup for this execution, rlimits only: %s", exc)
            if cgroup is not None:
                command = command.with_prefix(cgroup.join_prefix())
            result = await self._run(command, enforced, timeout)
            if cgroup is not None and (killed := cgroup.oom_kills()):
                result.stderr += (
                    f"\n[sandbox] out of memory: {killed} process(es) killed "
                    f"(memory_mb={enforced.memory_mb} in total)"
                )
            artifacts, notes = collect_artifacts(
                layout.work / "out",
                max_count=self.settings.max_artifacts,
                max_bytes=self.settings.max_artifacts_bytes,
            )
            result.artifacts = artifacts
            if notes:
                result.stderr += "".join(f"\n[sandbox] {note}" for note in notes)
        finally:
            if cgroup is not None:
                await asyncio.to_thread(cgroup.remove)
            await asyncio.to_thread(_remove_tree, top)
        result.duration_ms = (time.perf_counter() - started) * 1000
        result.limits = {
            "timeout_s": timeout,
            "memory_mb": enforced.memory_mb,
            "cpu_s": enforced.cpu_s,
            "pids": enforced.pids,
            "output_bytes": enforced.output_bytes,
            "network": False,
            "max_write_bytes": self.settings.max_write_bytes,
            "uid": layout.uid if layout.uid is not None else os.geteuid(),
            # Totals over every process of the execution, when a cgroup enforced them.
            "memory_total_mb": enforced.memory_mb if cgroup is not None else None,
            "pids_total": enforced.pids if cgroup is not None else None,
        }
        return result

    async def _run(
        self, command: _Command, limits: SandboxLimits, timeout: float
    ) -> ExecutionResult:
        output_limit = limits.output_bytes or DEFAULT_LIMITS.output_bytes or 1_000_000
        out, err = OutputBuffer(output_limit), OutputBuffer(output_limit)
        with _launch(command) as (argv, fd):
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                # bubblewrap's own processes (the namespace's pid 1 among them) keep the
                # environment and command line they were started with, readable in /proc/1
                # from inside: start them with nothing of the host's, from "/" (a shell on
                # the way, the cgroup join step, would export the host's working folder as
                # PWD).
                env=_BWRAP_ENV,
                cwd="/",
                pass_fds=(fd,),
            )
        pumps = asyncio.gather(_pump(proc.stdout, out), _pump(proc.stderr, err))
        timed_out = False
        try:
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                timed_out = True
            # Killing bubblewrap tears the pid namespace down: nothing the code started
            # survives it (--die-with-parent, and pid 1 of the namespace dies with it).
            _kill(proc)
            await proc.wait()
            try:
                await asyncio.wait_for(pumps, 5)
            except TimeoutError:
                err.feed(b"\n[sandbox] output did not close after the process ended")
        finally:
            if proc.returncode is None:
                _kill(proc)
                await asyncio.shield(proc.wait())
            if not pumps.done():
                pumps.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pumps
        code = proc.returncode
        return ExecutionResult(
            stdout=out.text(),
            stderr=err.text(),
            exit_code=None if timed_out else code,
            timed_out=timed_out,
            truncated=out.truncated or err.truncated,
            backend=self.name,
        )


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
