"""Unit tests of file validation, output truncation and artifact collection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flujo.domain.interfaces import SandboxLimits
from flujo_sandbox._common import (
    OutputBuffer,
    collect_artifacts,
    effective_limits,
    limits_from_json,
    truncate_text,
    validate_files,
    validate_language,
    write_files,
)
from flujo_sandbox.errors import SandboxFileError, SandboxLimitError, UnsupportedLanguageError


def test_valid_files_are_normalised() -> None:
    files = validate_files({"a.txt": b"1", "d/e/f.bin": b"\x00"}, max_files=5, max_bytes=10)
    assert files == {"a.txt": b"1", "d/e/f.bin": b"\x00"}


@pytest.mark.parametrize(
    "name", ["/abs", "../x", "a/../b", "a/./b", "a//b", "a/", "", "a\\b", "x\x00y", "."]
)
def test_bad_file_names_are_rejected(name: str) -> None:
    with pytest.raises(SandboxFileError):
        validate_files({name: b"x"}, max_files=5, max_bytes=10)


def test_file_caps() -> None:
    with pytest.raises(SandboxFileError, match="at most 1"):
        validate_files({"a": b"", "b": b""}, max_files=1, max_bytes=10)
    with pytest.raises(SandboxFileError, match="cap"):
        validate_files({"a": b"x" * 11}, max_files=5, max_bytes=10)
    with pytest.raises(SandboxFileError, match="inside file"):
        validate_files({"a": b"", "a/b": b""}, max_files=5, max_bytes=10)


def test_write_files_refuses_symlinked_folders(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "d")
    with pytest.raises(SandboxFileError):
        write_files(root, {"d/x.txt": b"x"})
    assert not (outside / "x.txt").exists()


def test_output_buffer_keeps_head_and_tail() -> None:
    buffer = OutputBuffer(100)
    buffer.feed(b"H" * 60)
    for _ in range(1000):
        buffer.feed(b"m" * 100)
    buffer.feed(b"T" * 60)
    text = buffer.text()
    assert buffer.truncated
    assert text.startswith("H" * 50)
    assert text.endswith("T" * 50)
    assert len(text.encode()) <= 100 + 256


def test_truncation_never_splits_a_character() -> None:
    text, cut = truncate_text("é" * 1000, 101)
    assert cut
    text.encode("utf-8")  # valid text
    assert "\ufffd" not in text
    assert truncate_text("short", 100) == ("short", False)


def test_collect_artifacts_skips_links_and_caps(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_bytes(b"a")
    (out / "big.bin").write_bytes(b"b" * 100)
    os.symlink("/etc/hostname", out / "link")
    artifacts, notes = collect_artifacts(out, max_count=10, max_bytes=50)
    assert artifacts == {"a.txt": b"a"}
    assert any("big.bin" in n for n in notes)
    assert any("link" in n for n in notes)
    assert collect_artifacts(tmp_path / "missing", max_count=1, max_bytes=1) == ({}, [])


def test_out_itself_as_a_symlink_is_ignored(tmp_path: Path) -> None:
    os.symlink("/etc", tmp_path / "out")
    artifacts, _ = collect_artifacts(tmp_path / "out", max_count=10, max_bytes=10**6)
    assert artifacts == {}


def test_languages_and_limits() -> None:
    assert validate_language("py", ("python",), "x") == "python"
    with pytest.raises(UnsupportedLanguageError, match="runs: python"):
        validate_language("ruby", ("python",), "x")
    merged = effective_limits(SandboxLimits(pids=5), SandboxLimits(memory_mb=1, pids=9))
    assert (merged.memory_mb, merged.pids) == (1, 5)
    with pytest.raises(SandboxLimitError):
        effective_limits(SandboxLimits(pids=0), SandboxLimits())
    with pytest.raises(SandboxLimitError):
        limits_from_json({"bogus": 1})
    with pytest.raises(SandboxLimitError):
        limits_from_json({"pids": "ten"})
    assert limits_from_json({"pids": 3}) == SandboxLimits(pids=3)
