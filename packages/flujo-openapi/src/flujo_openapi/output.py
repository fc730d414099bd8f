"""The output directory: writing, removing and comparing generated files, confined to it.

The manifest in the output directory is input too (a committed ``generated/`` folder can be
edited by anyone): every path it lists must be a plain relative path inside the directory,
or the regeneration is refused. Symbolic links inside the directory are never followed --
not for writing, removing or reading: every file is opened relative to a directory file
descriptor, component by component, with ``O_NOFOLLOW`` (no window between a check and the
write). The directory itself is the user's choice and may be a link.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from flujo_openapi.errors import OutputDirError

if TYPE_CHECKING:
    from flujo_openapi.generator import GeneratedFiles

__all__ = ["MANIFEST", "check_output", "ensure_writable", "foreign_files", "write_output"]

MANIFEST = "flujo-openapi.json"
"""The manifest's file name, in the output directory."""
_IGNORED_PARTS = ("__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _parts(rel: str) -> tuple[str, ...] | None:
    """The components of ``rel`` if it is a plain relative path, else ``None``."""
    if not rel or "\x00" in rel or "\\" in rel:
        return None
    path = PurePosixPath(rel)
    if path.is_absolute() or rel.startswith("/"):
        return None
    parts = tuple(rel.split("/"))
    if any(part in ("", ".", "..") for part in parts):
        return None
    return parts


def _symlink_error(output_dir: Path, rel: str) -> OutputDirError:
    return OutputDirError(
        f"{output_dir / rel} is (or is inside) a symbolic link; flujo-openapi does not "
        "follow links inside --output-dir: remove it"
    )


@contextmanager
def _directory(
    output_dir: Path, parts: tuple[str, ...], rel: str, *, create: bool
) -> Iterator[int | None]:
    """A file descriptor of ``output_dir/parts`` (no link followed below ``output_dir``), or
    ``None`` when it does not exist and ``create`` is off."""
    fds: list[int] = []
    try:
        try:
            fds.append(os.open(output_dir, os.O_RDONLY | _DIRECTORY | _CLOEXEC))
        except FileNotFoundError:
            if not create:
                yield None
                return
            output_dir.mkdir(parents=True, exist_ok=True)
            fds.append(os.open(output_dir, os.O_RDONLY | _DIRECTORY | _CLOEXEC))
        for part in parts:
            flags = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
            try:
                fds.append(os.open(part, flags, dir_fd=fds[-1]))
            except FileNotFoundError:
                if not create:
                    yield None
                    return
                os.mkdir(part, dir_fd=fds[-1])
                fds.append(os.open(part, flags, dir_fd=fds[-1]))
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _symlink_error(output_dir, rel) from None
                raise
        yield fds[-1]
    finally:
        for fd in reversed(fds):
            os.close(fd)


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _is_regular(dir_fd: int, name: str, output_dir: Path, rel: str) -> bool:
    """Whether ``name`` in ``dir_fd`` is a regular file.

    :raises OutputDirError: it is a symbolic link.
    """
    info = _lstat(dir_fd, name)
    if info is not None and stat.S_ISLNK(info.st_mode):
        raise _symlink_error(output_dir, rel)
    return info is not None and stat.S_ISREG(info.st_mode)


def _read(output_dir: Path, rel: str) -> bytes | None:
    """The bytes of the regular file ``output_dir/rel``; ``None`` if it is not one."""
    parts = _parts(rel)
    if parts is None:
        return None
    with _directory(output_dir, parts[:-1], rel, create=False) as dir_fd:
        if dir_fd is None or not _is_regular(dir_fd, parts[-1], output_dir, rel):
            return None
        fd = os.open(parts[-1], os.O_RDONLY | _NOFOLLOW | _CLOEXEC, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as handle:
            return handle.read()


def _write(output_dir: Path, rel: str, data: bytes) -> None:
    parts = _parts(rel)
    if parts is None:  # pragma: no cover - the generator makes only plain relative paths
        raise OutputDirError(f"refusing to write {rel!r}: not a path inside --output-dir")
    with _directory(output_dir, parts[:-1], rel, create=True) as dir_fd:
        assert dir_fd is not None
        info = _lstat(dir_fd, parts[-1])
        if info is not None and stat.S_ISLNK(info.st_mode):
            raise _symlink_error(output_dir, rel)
        try:
            fd = os.open(
                parts[-1],
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW | _CLOEXEC,
                0o666,
                dir_fd=dir_fd,
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _symlink_error(output_dir, rel) from None
            raise OutputDirError(f"cannot write {output_dir / rel}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)


def _remove(output_dir: Path, rel: str) -> bool:
    """Remove the regular file ``output_dir/rel`` (never through a link); whether it was."""
    parts = _parts(rel)
    if parts is None:  # pragma: no cover - _previous refuses such entries first
        raise OutputDirError(f"refusing to remove {rel!r}: not a path inside --output-dir")
    with _directory(output_dir, parts[:-1], rel, create=False) as dir_fd:
        if dir_fd is None or not _is_regular(dir_fd, parts[-1], output_dir, rel):
            return False
        os.unlink(parts[-1], dir_fd=dir_fd)
        return True


def _existing(output_dir: Path) -> set[str]:
    """Every file and link under ``output_dir`` (links to directories are not entered)."""
    if not output_dir.exists():
        return set()
    found = set()
    for dirpath, dirnames, filenames in os.walk(output_dir, followlinks=False):
        base = Path(dirpath).relative_to(output_dir)
        links = [d for d in dirnames if (Path(dirpath) / d).is_symlink()]
        dirnames[:] = [d for d in dirnames if d not in links and d not in _IGNORED_PARTS]
        for name in [*filenames, *links]:
            rel = (base / name).as_posix()
            if name.endswith(".pyc"):
                continue
            found.add(rel)
    return found


def _previous(output_dir: Path) -> set[str] | None:
    """The files the manifest in ``output_dir`` lists (and itself), or ``None`` if there is
    no manifest made by flujo-openapi.

    :raises OutputDirError: it lists a path outside ``output_dir``.
    """
    try:
        raw = _read(output_dir, MANIFEST)
    except OSError:
        return None
    if raw is None:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("generator") != "flujo-openapi":
        return None
    listed = data.get("files")
    if not isinstance(listed, dict):
        return None
    for rel in listed:
        if _parts(rel) is None:
            raise OutputDirError(
                f"{output_dir / MANIFEST} lists {rel!r}, which is not a path inside "
                f"{output_dir}; refusing to regenerate (restore or delete the manifest)"
            )
    return {*listed, MANIFEST}


def foreign_files(output_dir: Path) -> list[str]:
    """Files in ``output_dir`` the generator did not make (per the manifest there)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputDirError(f"--output-dir {output_dir} exists and is not a directory")
    existing = _existing(output_dir)
    previous = _previous(output_dir) or set()
    return sorted(existing - previous)


def ensure_writable(output_dir: Path, *, force: bool = False) -> None:
    """Refuse an ``output_dir`` with files the generator did not make (unless ``force``).

    :raises OutputDirError: it holds such files, or is not a directory, or its manifest
        lists a path outside it.
    """
    foreign = foreign_files(output_dir)
    if foreign and not force:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise OutputDirError(
            f"{output_dir} holds files not made by flujo-openapi ({shown}); "
            "choose an empty directory or pass --force"
        )


def write_output(generated: GeneratedFiles, output_dir: Path, *, force: bool = False) -> list[str]:
    """Write ``generated`` into ``output_dir``; return the files written or removed.

    Files from the previous generation that are no longer generated are removed.

    :raises OutputDirError: ``output_dir`` holds files the generator did not make and
        ``force`` is off; its manifest lists a path outside it; a link inside it is in the
        way.
    """
    ensure_writable(output_dir, force=force)
    changed: list[str] = []
    previous = _previous(output_dir) or set()
    for stale in sorted(previous - set(generated.files)):
        if _remove(output_dir, stale):
            changed.append(stale)
    # The manifest last: until it is written, the old one still describes the directory.
    ordered = sorted(generated.files.items(), key=lambda item: (item[0] == MANIFEST, item[0]))
    for rel, data in ordered:
        if _read(output_dir, rel) == data:
            continue
        _write(output_dir, rel, data)
        changed.append(rel)
    return changed


def check_output(generated: GeneratedFiles, output_dir: Path) -> list[str]:
    """The files that regenerating into ``output_dir`` would add, change or remove."""
    differ = []
    previous = _previous(output_dir) or set()
    for rel, data in sorted(generated.files.items()):
        if _read(output_dir, rel) != data:
            differ.append(rel)
    for stale in sorted(previous - set(generated.files)):
        parts = _parts(stale)
        if parts is not None and _read(output_dir, stale) is not None:
            differ.append(stale)
    return differ
