"""flujo.toml discovery, strict validation and environment overrides."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from flujo import ConfigError
from flujo.config import find_config_file, load_config, read_config_file
from flujo.plugins.manager import PluginManager


def _load(path: Path | None, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return load_config(path, plugin_manager=PluginManager(), environ=env or {})


def test_no_file_means_defaults() -> None:
    cfg = _load(None)
    assert cfg.path is None
    assert cfg.state.uri == "sqlite:///.flujo/flujo.db"
    assert cfg.run.policies == []
    assert cfg.run.usage_limits() is None


def test_discovery_walks_up_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "flujo.toml").write_text("[run]\nmax_requests = 3\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_config_file(deep, environ={}) == tmp_path / "flujo.toml"
    explicit = tmp_path / "other.toml"
    explicit.write_text("")
    assert find_config_file(deep, environ={"FLUJO_CONFIG": str(explicit)}) == explicit
    with pytest.raises(ConfigError, match=r"FLUJO_CONFIG=.*missing\.toml: no such file"):
        find_config_file(deep, environ={"FLUJO_CONFIG": str(tmp_path / "missing.toml")})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[run\n", r"flujo.toml: not valid TOML"),
        (
            "[state]\nurii = 'x'\n",
            r"\[state\]: unknown key 'urii' \(allowed: uri, synchronous, lease_s, pool_size\)",
        ),
        (
            "[run]\nmax_requests = 'many'\n",
            r"\[run\]: key 'max_requests': Input should be a valid integer",
        ),
        (
            "[run]\nmax_requests = -1\n",
            r"\[run\]: key 'max_requests': Input should be greater than or equal to 0",
        ),
        (
            "[state]\nsynchronous = 'sometimes'\n",
            r"\[state\]: key 'synchronous': Input should be 'normal' or 'full'",
        ),
        ("state = 3\n", r"\[state\]: expected a table, got int"),
        ("[nonsense]\na = 1\n", r"\[nonsense\]: unknown section; no installed plugin owns it"),
        (
            "[eval]\nenabled = true\n",
            r"\[eval\] needs the 'flujo-evals' plugin: pip install flujo-evals",
        ),
    ],
)
def test_invalid_files_name_the_file_section_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "flujo.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        _load(path)
    assert str(path) in str(info.value)


def test_environment_overrides_single_values(tmp_path: Path) -> None:
    path = tmp_path / "flujo.toml"
    path.write_text("[run]\nmax_requests = 3\n")
    cfg = _load(
        path,
        {
            "FLUJO__RUN__MAX_REQUESTS": "7",
            "FLUJO__STATE__URI": "sqlite:///x.db",
            "FLUJO__RUN__POLICIES": '["a", "b"]',
        },
    )
    assert cfg.run.max_requests == 7
    assert cfg.state.uri == "sqlite:///x.db"
    assert cfg.run.policies == ["a", "b"]
    assert _load(path, {"FLUJO_STATE_URI": "postgresql://db/x"}).state.uri == "postgresql://db/x"
    with pytest.raises(ConfigError, match="FLUJO__RUN: expected FLUJO__<SECTION>__<KEY>"):
        _load(path, {"FLUJO__RUN": "1"})
    with pytest.raises(ConfigError, match=r"FLUJO__RUN__NOPE: \[run\]: unknown key .nope."):
        _load(None, {"FLUJO__RUN__NOPE": "1"})


def test_unknown_state_scheme_is_a_config_error(tmp_path: Path) -> None:
    from flujo.state import open_backend

    cfg = _load(None, {"FLUJO__STATE__URI": "mysql://x"})
    with pytest.raises(ConfigError, match=r"unknown state backend 'mysql'; registered: postgres"):
        open_backend(cfg.state, tmp_path)
    relative = open_backend(_load(None).state, tmp_path)
    assert relative.path == tmp_path / ".flujo" / "flujo.db"


def _deep_array(depth: int) -> bytes:
    return b"x = " + b"[" * depth + b"]" * depth + b"\n"


def _deep_tables(depth: int) -> bytes:
    return b"[" + b".".join([b"a"] * depth) + b"]\nk = 1\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[run]\nmax_requests = 'caf\xe9'\n", r"line 2, column 20: not valid UTF-8 \(byte 0xe9\)"),
        (b"\xff\xfe[\x00r\x00", r"line 1, column 1: not valid UTF-8"),
        (_deep_array(5000), r"not valid TOML: arrays or tables nested too deeply"),
        (_deep_array(200), r"x\[0\]\[0\]\[0\]\.\.\.: nested more than 32 levels"),
        (_deep_tables(200), r"a\.a\.a\.a\.\.\.: nested more than 32 levels"),
        (b"x = {" + b"a = {" * 3000 + b"}" * 3001 + b"\n", r"nested too deeply"),
        (b'[state]\nuri = "sqlite:///a\\u0000b.db"\n', r"key 'state.uri': a string contains NUL"),
        (b"[state]\nlease_s = inf\n", r"\[state\]: key 'lease_s': Input should be a finite"),
        (b"[run]\ndrain_timeout_s = nan\n", r"key 'drain_timeout_s': Input should be a finite"),
        (b"[run]\nmax_requests = 1e999\n", r"key 'max_requests'"),
        (b"[plugins]\ndisable = 'flujo-memory'\n", r"\[plugins\]: key 'disable'"),
        (b"run = [1, 2]\n", r"\[run\]: expected a table, got list"),
        (b"x" * (1 << 20) + b"\n", r"a config file may be at most 1048576 bytes"),
    ],
    ids=[
        "latin1",
        "utf16",
        "deep-array-recursion",
        "deep-array",
        "deep-tables",
        "deep-inline-tables",
        "nul",
        "inf",
        "nan",
        "huge-float-for-int",
        "wrong-type",
        "section-not-table",
        "huge-file",
    ],
)
def test_hostile_files_are_one_config_error_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "flujo.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        _load(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_a_utf8_byte_order_mark_is_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "flujo.toml"
    path.write_bytes(b"\xef\xbb\xbf[run]\nmax_requests = 4\n")
    assert _load(path).run.max_requests == 4


def test_what_is_named_flujo_toml_but_is_not_a_file_is_reported(tmp_path: Path) -> None:
    """A folder, FIFO or dangling link named flujo.toml is an error, not skipped in favour of
    a parent's file, and a FIFO does not block the command."""
    (tmp_path / "flujo.toml").write_text("[run]\nmax_requests = 1\n")
    deep = tmp_path / "a"
    deep.mkdir()
    (deep / "flujo.toml").mkdir()
    found = find_config_file(deep, environ={})
    assert found == deep / "flujo.toml"
    with pytest.raises(ConfigError, match=r"a/flujo.toml: is a directory, not a config file"):
        _load(found)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"fifo.toml: not a regular file"):
        _load(fifo)
    dangling = tmp_path / "b" / "flujo.toml"
    dangling.parent.mkdir()
    dangling.symlink_to(tmp_path / "gone.toml")
    assert find_config_file(dangling.parent, environ={}) == dangling
    with pytest.raises(ConfigError, match=r"b/flujo.toml: no such file"):
        read_config_file(dangling)
    loop = tmp_path / "loop.toml"
    loop.symlink_to(loop)
    with pytest.raises(ConfigError, match=r"FLUJO_CONFIG=.*loop.toml: cannot resolve"):
        find_config_file(tmp_path, environ={"FLUJO_CONFIG": str(loop)})
    with pytest.raises(ConfigError, match=r"FLUJO_CONFIG=.*: no such file"):
        find_config_file(tmp_path, environ={"FLUJO_CONFIG": str(tmp_path / "nowhere.toml")})
    with pytest.raises(ConfigError, match=r": is a directory, not a config file"):
        _load(None, {"FLUJO_CONFIG": str(tmp_path)})


def _load_error_as_nobody(path: Path) -> str:
    """The ConfigError message of loading ``path`` in a forked child that dropped root for
    ``nobody`` (root reads a file whatever its mode; CI runs as root)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery from here on, only os._exit
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            _load(path)
            message = "loaded without an error"
        except ConfigError as exc:
            message = str(exc)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, never raised
            message = f"{type(exc).__name__}: {exc}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        message = reader.read().decode()
    os.waitpid(pid, 0)
    return message


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        path = tmp_path / "flujo.toml"
        path.write_text("[run]\n")
        path.chmod(0)
        with pytest.raises(ConfigError, match=r"flujo.toml: cannot read: Permission denied"):
            _load(path)
        return
    # As root: in a folder anyone may enter, loaded by a child that is no longer root.
    folder = Path(tempfile.mkdtemp(prefix="flujo-unreadable-"))
    try:
        folder.chmod(0o755)
        path = folder / "flujo.toml"
        path.write_text("[run]\n")
        path.chmod(0)
        assert "flujo.toml: cannot read: Permission denied" in _load_error_as_nobody(path)
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLUJO__RUN__MAX_REQUESTS": "many"}, r"^environment variable FLUJO__RUN__MAX_REQUESTS: "),
        ({"FLUJO__STATE__LEASE_S": "Infinity"}, r"^environment variable FLUJO__STATE__LEASE_S: "),
        (
            # Python 3.11's json recurses out (RecursionError); 3.13 parses it, and the depth
            # check names where: either way one line naming the variable.
            {"FLUJO__RUN__POLICIES": "[" * 5000 + "]" * 5000},
            r"FLUJO__RUN__POLICIES: (JSON nested too deeply|\[0\]\[0\])",
        ),
        ({"FLUJO__RUN__POLICIES": "[" * 40 + "]" * 40}, r"FLUJO__RUN__POLICIES: \[0\]\[0\]"),
        ({"FLUJO_STATE_URI": "sqlite:///\udcff.db"}, r"^environment variable FLUJO_STATE_URI: not"),
        ({"FLUJO__NOPE__X": "1"}, r"^environment variable FLUJO__NOPE__X: \[nope\]: unknown"),
        ({"FLUJO__RUN__NOPE": "1"}, r"^environment variable FLUJO__RUN__NOPE: \[run\]: unknown"),
    ],
)
def test_bad_environment_overrides_name_the_variable(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "flujo.toml"
    path.write_text("[run]\nmax_requests = 3\n")
    with pytest.raises(ConfigError, match=message):
        _load(path, env)
