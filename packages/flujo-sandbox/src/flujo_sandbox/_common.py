"""Pieces every backend shares: file validation, output truncation, artifacts, JSON shapes."""

from __future__ import annotations

import base64
import errno
import functools
import math
import os
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

from flujo.domain.interfaces import ExecutionResult, SandboxLimits

if TYPE_CHECKING:
    from flujo_sandbox.settings import SandboxSettings

from flujo_sandbox.errors import (
    SandboxConfigError,
    SandboxFileError,
    SandboxLimitError,
    SandboxRequestError,
    UnsupportedLanguageError,
)

__all__ = [
    "LIMIT_FIELDS",
    "Intake",
    "OutputBuffer",
    "Request",
    "check_limit",
    "check_text",
    "clean_token",
    "collect_artifacts",
    "effective_limits",
    "effective_timeout",
    "reported",
    "result_from_json",
    "result_to_json",
    "truncate_text",
    "validate_files",
    "validate_language",
    "write_files",
]


_Exec = TypeVar("_Exec", bound=Callable[..., Awaitable[ExecutionResult]])


def reported(exec_code: _Exec) -> _Exec:
    """Decorate a backend's ``exec_code``: each execution is reported as a
    ``sandbox.execute`` operation (:func:`flujo.plugin.operation`): a tracing plugin makes it
    a span, current while the code runs (so the remote backend's ``traceparent`` names it);
    without one this costs a context-variable read.

    Only what describes the execution is reported (backend, language, counts, status,
    limits, duration), never the code, the files or the output.
    """

    @functools.wraps(exec_code)
    async def reporting(self: Any, code: str, *args: Any, **kwargs: Any) -> ExecutionResult:
        from flujo.plugin import operation

        lang = args[0] if args else kwargs.get("lang", "python")
        files = kwargs.get("files") or {}
        attributes: dict[str, str | bool | int | float] = {
            "flujo.sandbox.backend": str(getattr(self, "name", type(self).__name__)),
            "flujo.sandbox.language": str(lang)[:32],
            "flujo.sandbox.files": len(files) if isinstance(files, Mapping) else 0,
        }
        with operation("sandbox.execute", attributes) as op:
            result: ExecutionResult = await exec_code(self, code, *args, **kwargs)
            op.set(_described(result))
            if result.error is not None:
                op.fail(result.error)
        return result

    return cast("_Exec", reporting)


def _described(result: ExecutionResult) -> dict[str, str | bool | int | float]:
    described: dict[str, str | bool | int | float] = {
        "flujo.sandbox.timed_out": result.timed_out,
        "flujo.sandbox.truncated": result.truncated,
        "flujo.sandbox.artifacts": len(result.artifacts),
        "flujo.sandbox.duration_ms": round(result.duration_ms, 3),
        "flujo.sandbox.stdout_bytes": len(result.stdout.encode("utf-8", "replace")),
        "flujo.sandbox.stderr_bytes": len(result.stderr.encode("utf-8", "replace")),
    }
    if result.exit_code is not None:
        described["flujo.sandbox.exit_code"] = result.exit_code
    timeout = result.limits.get("timeout_s")
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        described["flujo.sandbox.timeout_s"] = float(timeout)  # the one enforced
    return described


NOTICE = "\n[... {n} bytes truncated ...]\n"
"""Put between the kept head and tail of a truncated stream (well under 256 bytes)."""


def validate_language(lang: str, supported: tuple[str, ...], backend: str) -> str:
    """``lang`` normalised (``py`` -> ``python``, ``sh`` -> ``bash``), or raise."""
    aliases = {"py": "python", "python3": "python", "sh": "bash", "shell": "bash"}
    name = aliases.get(lang.strip().lower(), lang.strip().lower())
    if name not in supported:
        raise UnsupportedLanguageError(
            f"the {backend} sandbox does not run {lang!r}; it runs: {', '.join(supported)}"
        )
    return name


def validate_files(
    files: Mapping[str, bytes] | None, *, max_files: int, max_bytes: int
) -> dict[str, bytes]:
    """Check the names and sizes of input files; return them keyed by normalised path.

    Rejected: absolute paths, ``..`` segments, empty or ``.`` segments, backslashes, NUL,
    names under ``out/`` are allowed. A name that is a prefix folder of another name is a
    conflict.
    """
    if not files:
        return {}
    if len(files) > max_files:
        raise SandboxFileError(f"{len(files)} files given; at most {max_files} are allowed")
    total = 0
    clean: dict[str, bytes] = {}
    for name, content in files.items():
        if not isinstance(name, str) or not name:
            raise SandboxFileError(f"invalid file name {name!r}")
        if not isinstance(content, bytes | bytearray):
            raise SandboxFileError(f"file {name!r}: content must be bytes")
        if "\x00" in name or "\\" in name:
            raise SandboxFileError(f"file {name!r}: NUL and backslash are not allowed")
        if name.startswith("/"):
            raise SandboxFileError(f"file {name!r}: absolute paths are not allowed")
        parts = name.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise SandboxFileError(
                f"file {name!r}: '..', '.' and empty path segments are not allowed"
            )
        total += len(content)
        if total > max_bytes:
            raise SandboxFileError(f"the files are over the {max_bytes}-byte cap")
        clean[str(PurePosixPath(*parts))] = bytes(content)
    names = set(clean)
    for name in clean:
        for parent in PurePosixPath(name).parents:
            if str(parent) in names:
                raise SandboxFileError(f"file {name!r} is inside file {str(parent)!r}")
    return clean


def write_files(root: Path, files: Mapping[str, bytes]) -> None:
    """Write validated ``files`` under ``root`` without following any symlink."""
    for name, content in files.items():
        parts = name.split("/")
        folder = root
        for part in parts[:-1]:
            folder = folder / part
            try:
                folder.mkdir(mode=0o755)
            except FileExistsError:
                # Only a real folder we made may be entered; a symlink would lead elsewhere.
                if not stat.S_ISDIR(os.lstat(folder).st_mode):
                    raise SandboxFileError(f"file {name!r}: {part!r} is not a folder") from None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(folder / parts[-1], flags, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ELOOP):
                raise SandboxFileError(f"file {name!r} given twice or is a symlink") from None
            raise
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)


def collect_artifacts(
    out_dir: Path, *, max_count: int, max_bytes: int
) -> tuple[dict[str, bytes], list[str]]:
    """Regular files under ``out_dir`` (never through symlinks), within the caps.

    Returns the artifacts by relative POSIX path and notes about what was left out. The
    folder was written by untrusted code: every entry is ``lstat``-ed, opened with
    ``O_NOFOLLOW | O_NONBLOCK`` and checked to be a regular file *after* opening, so a
    symlink, a FIFO or a device swapped in cannot make this (possibly root) process read a
    host file or block.
    """
    notes: list[str] = []
    artifacts: dict[str, bytes] = {}
    try:
        if not stat.S_ISDIR(os.lstat(out_dir).st_mode):
            return {}, ["out is not a folder; no artifacts collected"]
    except FileNotFoundError:
        return {}, []
    total = 0
    for folder, dirs, names in os.walk(out_dir, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            rel = path.relative_to(out_dir).as_posix()
            if len(artifacts) >= max_count:
                notes.append(f"more than {max_count} artifacts; the rest were left out")
                return artifacts, notes
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
            try:
                fd = os.open(path, flags)
            except OSError:
                notes.append(f"{rel}: not a regular file; skipped")
                continue
            with os.fdopen(fd, "rb") as fh:
                info = os.fstat(fh.fileno())
                if not stat.S_ISREG(info.st_mode):
                    notes.append(f"{rel}: not a regular file; skipped")
                    continue
                if total + info.st_size > max_bytes:
                    notes.append(f"{rel}: over the {max_bytes}-byte artifact cap; skipped")
                    continue
                data = fh.read(max_bytes - total + 1)
            if total + len(data) > max_bytes:
                notes.append(f"{rel}: over the {max_bytes}-byte artifact cap; skipped")
                continue
            total += len(data)
            artifacts[rel] = data
    return artifacts, notes


def _cut_utf8_start(data: bytes) -> bytes:
    """Drop continuation bytes at the start so decoding does not begin mid-character."""
    i = 0
    while i < len(data) and i < 4 and (data[i] & 0xC0) == 0x80:
        i += 1
    return data[i:]


def _cut_utf8_end(data: bytes) -> bytes:
    """Drop an incomplete multi-byte character at the end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if (byte & 0xC0) == 0x80:
            continue
        if byte >= 0xC0:
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            if need > back:
                return data[:-back]
        return data
    return data


class OutputBuffer:
    """Collects a stream keeping at most ``limit`` bytes: the first half and the last half.

    Memory stays bounded however much the code prints, so 50 MB of output costs 2 * limit.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._head_cap = limit // 2
        self._tail_cap = limit - self._head_cap
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        """Add ``chunk`` to the stream."""
        self.total += len(chunk)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            if len(self._tail) > self._tail_cap:
                del self._tail[: len(self._tail) - self._tail_cap]

    @property
    def truncated(self) -> bool:
        """True when more than ``limit`` bytes were fed."""
        return self.total > self.limit

    def text(self) -> str:
        """The kept output as text (UTF-8, invalid bytes replaced), with a notice if cut."""
        if not self.truncated:
            return (bytes(self._head) + bytes(self._tail)).decode("utf-8", errors="replace")
        head = _cut_utf8_end(bytes(self._head)).decode("utf-8", errors="replace")
        tail = _cut_utf8_start(bytes(self._tail)).decode("utf-8", errors="replace")
        return head + NOTICE.format(n=self.total - self.limit) + tail


def truncate_text(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` UTF-8 bytes the way :class:`OutputBuffer` cuts a stream."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text, False
    buffer = OutputBuffer(limit)
    buffer.feed(data)
    return buffer.text(), True


LIMIT_FIELDS: dict[str, type] = {
    "memory_mb": int,
    "cpu_s": float,
    "pids": int,
    "output_bytes": int,
}
"""The numeric fields of :class:`SandboxLimits` and the type each is enforced as."""

LIMIT_MAX = 2**53
"""Larger limits are refused rather than lowered: no machine has them, and past 2**53 a float
no longer holds every integer, so the value a caller sent may not be the one enforced."""


def check_limit(name: str, value: Any) -> Any:
    """``value`` checked as limit ``name``: ``None``, or a finite positive number (a whole one
    for integer limits) up to :data:`LIMIT_MAX`, returned as the field's type.

    NaN, infinities (JSON ``1e999`` parses as one), booleans, strings, fractions of a
    process: each is a :class:`SandboxLimitError` naming the limit, never a crash later.
    """
    if value is None:
        return None
    kind = LIMIT_FIELDS[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SandboxLimitError(f"limit {name} must be a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SandboxLimitError(f"limit {name} must be a finite number, got {value}")
    if value <= 0:
        raise SandboxLimitError(f"limit {name} must be positive, got {value}")
    if value > LIMIT_MAX:
        raise SandboxLimitError(f"limit {name} is too large ({value:.3g}; at most 2**53)")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise SandboxLimitError(f"limit {name} must be a whole number, got {value}")
        return int(value)
    return float(value)


def check_text(value: Any, what: str, *, nul: bool = True) -> str:
    """``value`` if it is a string that can be written as UTF-8 (no lone surrogate) and, unless
    ``nul`` allows it, has no NUL byte (nothing that reaches a command line can hold one)."""
    if not isinstance(value, str):
        raise SandboxRequestError(f"{what} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SandboxRequestError(
            f"{what} is not valid text (a lone surrogate at position {exc.start})"
        ) from None
    if not nul and "\x00" in value:
        raise SandboxRequestError(f"{what} contains a NUL byte")
    return value


def clean_token(value: str | None, source: str) -> str | None:
    """A bearer token as read from ``source`` (a variable, a flag): surrounding whitespace
    dropped (a secret mounted from a file often ends in a newline), ``None`` when empty.

    Raises :class:`SandboxConfigError` unless it is visible ASCII: anything else cannot travel
    in an HTTP header, and would fail at the first request instead of at start.
    """
    if value is None:
        return None
    token = value.strip()
    if not token:
        return None
    if not all("!" <= ch <= "~" for ch in token):
        raise SandboxConfigError(
            f"{source}: the bearer token must be printable ASCII without spaces"
        )
    return token


def effective_timeout(timeout_s: Any, settings: Any) -> float:
    """The wall-clock limit of one execution: ``timeout_s`` (else ``settings.timeout_s``)
    capped at ``settings.max_timeout_s``; a non-number, NaN or a value <= 0 raises
    :class:`SandboxLimitError` (``min`` would keep a NaN, and no comparison rejects one)."""
    if timeout_s is None:
        timeout_s = settings.timeout_s
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise SandboxLimitError(f"timeout_s must be a number, got {type(timeout_s).__name__}")
    if not timeout_s > 0:
        raise SandboxLimitError(f"timeout_s must be positive, got {timeout_s}")
    return min(timeout_s, settings.max_timeout_s)  # type: ignore[no-any-return]


def effective_limits(requested: SandboxLimits | None, defaults: SandboxLimits) -> SandboxLimits:
    """``requested`` with each unset (``None``) field taken from ``defaults``, every value
    checked by :func:`check_limit` (so ``memory_mb=256.0`` is enforced as ``256``, and NaN or
    ``inf`` raise :class:`SandboxLimitError`)."""
    chosen = requested or defaults
    values = {}
    for name in LIMIT_FIELDS:
        value = getattr(chosen, name)
        values[name] = check_limit(name, value if value is not None else getattr(defaults, name))
    if not isinstance(chosen.network, bool):
        raise SandboxLimitError("limit network must be true or false")
    return SandboxLimits(network=chosen.network, **values)


def result_to_json(result: ExecutionResult, *, sandbox_id: str | None = None) -> dict[str, Any]:
    """The wire shape of a result (the remote contract plus flujo-sandbox's extra fields)."""
    return {
        "stdout": result.stdout,
        "stderr": result.stderr,
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "truncated": result.truncated,
        "error": result.error,
        "sandbox_id": sandbox_id,
        "artifacts": {
            name: {"base64": base64.b64encode(data).decode("ascii")}
            for name, data in result.artifacts.items()
        },
        "duration_ms": result.duration_ms,
        "limits": dict(result.limits),
        "backend": result.backend,
    }


def result_from_json(data: Mapping[str, Any], *, backend: str) -> ExecutionResult:
    """Read :func:`result_to_json`'s shape back (artifacts must already be bytes-decoded by the
    caller when they are not ``{"base64": ...}`` entries)."""
    artifacts: dict[str, bytes] = {}
    for name, value in dict(data.get("artifacts") or {}).items():
        if isinstance(value, dict) and isinstance(value.get("base64"), str):
            artifacts[str(name)] = base64.b64decode(value["base64"])
    exit_code = data.get("exit_code")
    return ExecutionResult(
        stdout=str(data.get("stdout") or ""),
        stderr=str(data.get("stderr") or ""),
        exit_code=int(exit_code) if isinstance(exit_code, int) else None,
        timed_out=bool(data.get("timed_out", False)),
        truncated=bool(data.get("truncated", False)),
        artifacts=artifacts,
        duration_ms=float(data.get("duration_ms") or 0.0),
        limits=dict(data.get("limits") or {}),
        backend=backend,
        error=data.get("error") if isinstance(data.get("error"), str) else None,
    )


def limits_to_json(limits: SandboxLimits) -> dict[str, Any]:
    """A :class:`SandboxLimits` as a JSON object."""
    return {
        "memory_mb": limits.memory_mb,
        "cpu_s": limits.cpu_s,
        "pids": limits.pids,
        "output_bytes": limits.output_bytes,
        "network": limits.network,
    }


def limits_from_json(data: Any) -> SandboxLimits | None:
    """A JSON object as :class:`SandboxLimits` (``None`` for ``None``); raises on bad types."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise SandboxLimitError("limits must be an object")
    unknown = set(data) - {*LIMIT_FIELDS, "network"}
    if unknown:
        shown = ", ".join(sorted(repr(key)[:40] for key in unknown)[:5])
        raise SandboxLimitError(f"unknown limit(s): {shown}")

    network = data.get("network", False)
    if network is None:
        network = False
    if not isinstance(network, bool):
        raise SandboxLimitError("limit network must be true or false")
    return SandboxLimits(
        memory_mb=check_limit("memory_mb", data.get("memory_mb")),
        cpu_s=check_limit("cpu_s", data.get("cpu_s")),
        pids=check_limit("pids", data.get("pids")),
        output_bytes=check_limit("output_bytes", data.get("output_bytes")),
        network=network,
    )


class Request(NamedTuple):
    """One ``exec_code`` call's arguments, checked and completed from the settings (a tuple:
    ``lang, limits, files, timeout_s = intake.check(...)``)."""

    lang: str
    limits: SandboxLimits
    files: dict[str, bytes]
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Intake:
    """How one backend checks its ``exec_code`` arguments: what every backend does first, in
    one place (the language normalised and supported, the limits completed from ``defaults``
    and checked, the timeout defaulted and capped, the input files' names and sizes checked)."""

    settings: SandboxSettings
    backend: str
    languages: tuple[str, ...]
    defaults: SandboxLimits

    def check(
        self,
        lang: str,
        files: Mapping[str, bytes] | None,
        timeout_s: float | None,
        limits: SandboxLimits | None,
    ) -> Request:
        """The checked request; raises on the first bad value."""
        settings = self.settings
        return Request(
            lang=validate_language(lang, self.languages, self.backend),
            limits=effective_limits(limits, self.defaults),
            files=validate_files(
                files, max_files=settings.max_files, max_bytes=settings.max_files_bytes
            ),
            timeout_s=effective_timeout(timeout_s, settings),
        )
