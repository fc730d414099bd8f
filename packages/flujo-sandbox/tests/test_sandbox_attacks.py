"""The attack suite: each attack runs against ``local`` and against ``remote`` through the
sidecar, and each test asserts the attack was contained and the host is unchanged."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from flujo.domain.interfaces import SandboxLimits
from flujo_sandbox.errors import SandboxFileError, SandboxLimitError


def _host_pids_with(marker: str) -> list[int]:
    """Host processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


async def test_host_secret_files_are_unreadable(box: Any, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("TOP-SECRET-HOST-DATA")
    home = os.path.expanduser("~")
    code = textwrap.dedent(
        f"""
        import os
        for path in ["/etc/shadow", "/etc/passwd", {str(secret)!r}, {home!r}, "/root"]:
            try:
                if os.path.isdir(path):
                    print("LISTED", path, os.listdir(path))
                else:
                    print("READ", path, open(path).read()[:50])
            except OSError as exc:
                print("DENIED", path, type(exc).__name__)
        """
    )
    result = await box.exec_code(code, timeout_s=20)
    assert result.exit_code == 0, result.stderr
    assert "TOP-SECRET-HOST-DATA" not in result.stdout
    assert "READ" not in result.stdout, result.stdout
    assert "LISTED" not in result.stdout, result.stdout


async def test_host_environment_is_not_visible(box: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUJO_SANDBOX_TEST_SECRET", "env-s3cret-value")
    code = textwrap.dedent(
        """
        import os
        print(sorted(os.environ))
        print(os.environ.get("FLUJO_SANDBOX_TEST_SECRET"))
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    print(open(f"/proc/{pid}/environ", "rb").read())
                except OSError:
                    pass
        """
    )
    result = await box.exec_code(code, timeout_s=20)
    assert result.exit_code == 0, result.stderr
    assert "env-s3cret-value" not in result.stdout
    assert "FLUJO_SANDBOX_TEST_SECRET" not in result.stdout
    # Nothing of the host's environment at all, only what the sandbox sets.
    assert "OPENAI" not in result.stdout
    assert "VIRTUAL_ENV" not in result.stdout


@pytest.mark.parametrize("cgroups", ["auto", "off"])
async def test_nothing_of_the_host_process_is_visible(
    cgroups: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    local_sandbox: Any,  # skips (fails under CI=true) without bubblewrap
) -> None:
    """Every process the code can see (its own, bubblewrap's pid 1, ``env``) shows only the
    sandbox's environment: not the host's working folder, variables or temp folder names.

    Real bubblewrap, with and without the per-execution cgroup (whose ``sh`` join step would
    otherwise export the host's ``PWD`` into pid 1's environment).
    """
    from flujo_sandbox.local import LocalSandbox
    from flujo_sandbox.settings import SandboxSettings

    host_cwd = tmp_path / "host-cwd-marker-7f3a"
    host_cwd.mkdir()
    # Under /tmp, not tmp_path: pytest's folders are 0700, and bubblewrap runs as another uid
    # on a root host.
    work_root = Path(tempfile.mkdtemp(prefix="work-root-marker-91c2-"))
    work_root.chmod(0o711)
    request.addfinalizer(lambda: shutil.rmtree(work_root, ignore_errors=True))
    monkeypatch.chdir(host_cwd)
    monkeypatch.setenv("FLUJO_SANDBOX_HOST_MARKER", "host-env-marker-5d1e")
    box = LocalSandbox(
        SandboxSettings(backend="local", cgroups=cgroups, work_root=str(work_root))  # type: ignore[arg-type]
    )
    code = textwrap.dedent(
        """
        import os, subprocess
        def show(path):
            try:
                with open(path, "rb") as fh:
                    print(path, fh.read())
            except OSError as exc:
                print(path, "unreadable", type(exc).__name__)
        for pid in ["self"] + [p for p in os.listdir("/proc") if p.isdigit()]:
            show(f"/proc/{pid}/environ")
            show(f"/proc/{pid}/cmdline")
            for link in ("cwd", "root", "exe"):
                try:
                    print(pid, link, os.readlink(f"/proc/{pid}/{link}"))
                except OSError as exc:
                    print(pid, link, "unreadable", type(exc).__name__)
        print("getcwd", os.getcwd())
        print("env", subprocess.run(["env"], capture_output=True, text=True).stdout)
        """
    )
    result = await box.exec_code(code, timeout_s=20)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "host-cwd-marker-7f3a" not in out, out
    assert "host-env-marker-5d1e" not in out
    assert "FLUJO_SANDBOX_HOST_MARKER" not in out
    # The per-execution folder's host path (under work_root) is not in any command line.
    assert "work-root-marker-91c2" not in out, out
    assert "VIRTUAL_ENV" not in out
    assert "HOSTNAME" not in out
    # pid 1 (bubblewrap's init) has exactly the environment bubblewrap was started with.
    assert "/proc/1/environ b'PATH=/usr/bin:/bin\\x00'" in out, out


async def test_no_network_egress_by_ip(box: Any) -> None:
    # A listener on the host's loopback: the most reachable target there is.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        code = textwrap.dedent(
            f"""
            import socket
            for host, port in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("8.8.8.8", 443)]:
                s = socket.socket()
                s.settimeout(2)
                try:
                    s.connect((host, port))
                    print("CONNECTED", host)
                except OSError as exc:
                    print("BLOCKED", host, exc)
            """
        )
        # The control: the same code outside the sandbox reaches the loopback listener, so a
        # BLOCKED inside is the sandbox's doing, not a runner without network.
        control = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
        )
        result = await box.exec_code(code, timeout_s=20)
    finally:
        listener.close()
    assert "CONNECTED 127.0.0.1" in control.stdout, control.stdout + control.stderr
    assert result.exit_code == 0, result.stderr
    assert "CONNECTED" not in result.stdout, result.stdout
    assert result.stdout.count("BLOCKED") == 3


async def test_no_network_interface_but_loopback(box: Any) -> None:
    """Egress is impossible by construction, whatever the runner's own network: the sandbox's
    network namespace has no interface but ``lo`` (the DNS and IP tests above cannot tell a
    sandbox from a runner without network for outside addresses; this can)."""
    code = "print(open('/proc/net/dev').read())"
    result = await box.exec_code(code, timeout_s=20)
    assert result.exit_code == 0, result.stderr
    names = {
        line.split(":", 1)[0].strip() for line in result.stdout.splitlines()[2:] if ":" in line
    }
    assert names == {"lo"}, result.stdout


async def test_no_network_egress_by_dns(box: Any) -> None:
    code = textwrap.dedent(
        """
        import socket
        for name in ["example.com", "pypi.org"]:
            try:
                print("RESOLVED", socket.getaddrinfo(name, 443))
            except OSError as exc:
                print("NO-DNS", name, exc)
        """
    )
    result = await box.exec_code(code, timeout_s=20)
    assert result.exit_code == 0, result.stderr
    assert "RESOLVED" not in result.stdout
    assert result.stdout.count("NO-DNS") == 2


async def test_writes_outside_the_work_dir_do_not_reach_the_host(box: Any, tmp_path: Path) -> None:
    name = f"flujo-escape-{uuid.uuid4().hex}"
    targets = ["/usr", "/etc", "/", "/code", str(tmp_path), "/tmp", "/var/tmp"]
    code = textwrap.dedent(
        f"""
        import os
        for folder in {targets!r}:
            try:
                with open(os.path.join(folder, {name!r}), "w") as fh:
                    fh.write("x")
                print("WROTE", folder)
            except OSError as exc:
                print("DENIED", folder, type(exc).__name__)
        """
    )
    result = await box.exec_code(code, timeout_s=20)
    assert result.exit_code == 0, result.stderr
    for folder in ["/usr", "/etc", "/", str(tmp_path), "/tmp", "/var/tmp"]:
        assert not os.path.exists(os.path.join(folder, name)), f"escaped into host {folder}"
    for folder in ["/usr", "/etc", "/code"]:
        assert f"WROTE {folder}\n" not in result.stdout, result.stdout


@pytest.mark.parametrize(
    "name",
    ["../escape.txt", "a/../../escape.txt", "/etc/cron.d/evil", "./x", "a//b", "a\\..\\b", ""],
)
async def test_traversal_file_names_are_rejected(box: Any, name: str) -> None:
    with pytest.raises(SandboxFileError):
        await box.exec_code("print('never')", files={name: b"x"})


async def test_symlinks_in_out_are_not_followed(box: Any) -> None:
    code = textwrap.dedent(
        """
        import os
        os.makedirs("out/sub")
        os.symlink("/etc/hostname", "out/hostname")
        os.symlink("/etc", "out/etcdir")
        os.symlink("../../../../../../etc/passwd", "out/sub/passwd")
        os.mkfifo("out/fifo")
        open("out/real.txt", "w").write("artifact-ok")
        """
    )
    result = await box.exec_code(code, timeout_s=20)
    assert result.exit_code == 0, result.stderr
    assert result.artifacts == {"real.txt": b"artifact-ok"}


async def test_fork_bomb_is_contained(box: Any) -> None:
    counted = textwrap.dedent(
        """
        import os, time
        n = 0
        for _ in range(5000):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            n += 1
        print("forked", n)
        """
    )
    result = await box.exec_code(counted, timeout_s=20, limits=SandboxLimits(pids=16))
    assert result.exit_code == 0, result.stderr
    forked = int(result.stdout.split()[-1])
    assert forked < 16, f"{forked} processes under a 16-process limit"

    bomb = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    result = await box.exec_code(bomb, timeout_s=2, limits=SandboxLimits(pids=32))
    assert result.timed_out or result.exit_code != 0
    # Every sandboxed Python runs as `python -s /code/main.py`: none may be left.
    assert _host_pids_with("/code/main.py") == []
    after = await box.exec_code("print('alive')", timeout_s=20)
    assert after.ok
    assert "alive" in after.stdout


async def test_bash_fork_bomb_is_contained(box: Any) -> None:
    # The classic bomb, then the script stays alive so the bomb runs until the timeout.
    result = await box.exec_code(
        ":(){ :|:& };:\nsleep 30\n", "bash", timeout_s=2, limits=SandboxLimits(pids=32)
    )
    assert result.timed_out
    assert not result.ok
    assert _host_pids_with("/code/main.sh") == []
    after = await box.exec_code("print('alive')", timeout_s=20)
    assert after.ok


async def test_memory_bomb_is_contained(box: Any) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))\n"
    result = await box.exec_code(code, timeout_s=20, limits=SandboxLimits(memory_mb=128))
    assert result.exit_code not in (0, None), result
    assert "MemoryError" in result.stderr
    assert not result.timed_out


async def test_cpu_limit_stops_a_busy_loop(box: Any) -> None:
    result = await box.exec_code(
        "while True:\n    pass\n", timeout_s=20, limits=SandboxLimits(cpu_s=1)
    )
    assert not result.timed_out, "the CPU limit, not the wall-clock timeout, must stop it"
    assert result.exit_code not in (0, None)
    assert result.duration_ms < 15_000


async def test_infinite_loop_times_out(box: Any) -> None:
    result = await box.exec_code("while True:\n    pass\n", timeout_s=1)
    assert result.timed_out
    assert not result.ok
    assert result.duration_ms < 10_000


async def test_50_mb_of_stdout_is_truncated_keeping_head_and_tail(box: Any) -> None:
    code = (
        "import sys\n"
        "sys.stdout.write('HEAD-MARK' + 'x' * 50_000_000 + 'TAIL-MARK')\n"
        "sys.stdout.flush()\n"
    )
    result = await box.exec_code(code, timeout_s=30, limits=SandboxLimits(output_bytes=100_000))
    assert result.exit_code == 0, result.stderr
    assert result.truncated
    assert len(result.stdout.encode()) <= 100_000 + 256
    assert result.stdout.startswith("HEAD-MARK")
    assert result.stdout.endswith("TAIL-MARK")
    assert "truncated" in result.stdout


async def test_no_process_survives_a_timeout(box: Any) -> None:
    marker = f"98765{uuid.uuid4().int % 10_000}.5"
    code = textwrap.dedent(
        f"""
        import os, subprocess, time
        # Detach a grandchild in its own session, as a daemon would.
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", "{marker}"])
            os._exit(0)
        subprocess.Popen(["sleep", "{marker}"], start_new_session=True)
        time.sleep(0.3)
        while True:
            pass
        """
    )
    execution = asyncio.ensure_future(box.exec_code(code, timeout_s=3))
    # Prove the attack happened: the detached sleepers exist (seen from the host) before the
    # timeout; otherwise "none survived" would pass for an attack that never started.
    deadline = time.monotonic() + 10
    seen: list[int] = []
    while not seen and time.monotonic() < deadline and not execution.done():
        seen = _host_pids_with(marker)
        await asyncio.sleep(0.05)
    result = await execution
    assert seen, "the sandboxed code never spawned its detached grandchildren"
    assert result.timed_out
    assert _host_pids_with(marker) == [], "a sandboxed process outlived its timeout"


async def test_network_access_cannot_be_granted_silently(box: Any) -> None:
    with pytest.raises(SandboxLimitError):
        await box.exec_code("print(1)", limits=SandboxLimits(network=True))


async def test_memory_bomb_across_processes_is_capped_in_total(box: Any) -> None:
    """Per-process rlimits alone would let 8 processes hold 8 x 100 MB under memory_mb=256;
    the execution's cgroup caps the total (where cgroups are writable, e.g. root in CI)."""
    from flujo_sandbox.local import probe
    from flujo_sandbox.settings import SandboxSettings

    if not probe(SandboxSettings(backend="local")).details.get("cgroups"):
        pytest.skip("no writable cgroup v1 memory/pids controllers: totals are not enforced")
    code = textwrap.dedent(
        """
        import os, time
        kids = []
        for _ in range(8):
            pid = os.fork()
            if pid == 0:
                try:
                    block = bytearray(100 * 1024 * 1024)
                    for i in range(0, len(block), 4096):
                        block[i] = 1
                    time.sleep(0.5)
                except MemoryError:
                    pass
                os._exit(0)
            kids.append(pid)
        print(sum(os.waitpid(k, 0)[1] == 0 for k in kids))
        """
    )
    result = await box.exec_code(code, timeout_s=30, limits=SandboxLimits(memory_mb=256))
    assert result.limits.get("memory_total_mb") == 256
    survivors = int(result.stdout.split()[-1]) if result.stdout.strip() else 0
    assert survivors <= 2, f"{survivors} x 100 MB processes ran under a 256 MB total"
    assert "out of memory" in result.stderr


async def test_work_folder_is_removed_even_when_the_code_locks_it(box: Any) -> None:
    import glob
    import tempfile

    pattern = os.path.join(tempfile.gettempdir(), "flujo-sandbox-*")
    before = set(glob.glob(pattern))
    code = textwrap.dedent(
        """
        import os
        os.makedirs("locked/deeper")
        open("locked/deeper/f", "w").write("x")
        os.chmod("locked/deeper", 0)
        os.chmod("locked", 0)
        os.chmod(".", 0o500)
        print("locked")
        """
    )
    result = await box.exec_code(code, timeout_s=20)
    assert result.exit_code == 0, result.stderr
    # Other processes may run sandboxes meanwhile: look for this execution's folder only.
    left = [p for p in set(glob.glob(pattern)) - before if os.path.lexists(f"{p}/work/locked")]
    assert left == [], "an execution's folder was left on the host"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"limits": SandboxLimits(memory_mb=float("nan"))}, "memory_mb"),  # type: ignore[arg-type]
        ({"limits": SandboxLimits(cpu_s=float("inf"))}, "cpu_s"),
        ({"limits": SandboxLimits(pids=2.5)}, "pids"),  # type: ignore[arg-type]
        ({"limits": SandboxLimits(output_bytes=-1)}, "output_bytes"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"timeout_s": "5"}, "timeout_s"),
        ({"code": "print('\ud800')"}, "the code"),
        ({"arguments": ["a\x00b"]}, "argument 1"),
        ({"arguments": ["\udfff"]}, "argument 1"),
        ({"environment": {"A": "\ud800"}}, "environment variable A"),
    ],
)
async def test_local_refuses_unrepresentable_requests(
    local_sandbox: Any, kwargs: dict[str, Any], error: str
) -> None:
    """Straight to the backend (the sidecar checks these too): a clear user error naming
    the field, never a crash deep in process spawning."""
    from flujo.domain.errors import UserError

    call = {"code": "print(1)", **kwargs}
    with pytest.raises(UserError, match=error):
        await local_sandbox.exec_code(call.pop("code"), **call)
