"""flujo.toml discovery, strict validation and environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from flujo import ConfigError
from flujo.config import find_config_file, load_config
from flujo.plugins.manager import PluginManager


def _load(path: Path | None, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return load_config(path, plugin_manager=PluginManager(), environ=env or {})


def test_no_file_means_defaults() -> None:
    cfg = _load(None)
    assert cfg.path is None
    assert cfg.state.uri == "sqlite:///.flujo/flujo.db"
    assert cfg.run.policies == [] and cfg.run.usage_limits() is None


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
    with pytest.raises(ConfigError, match=r"environment: \[run\]: unknown key 'nope'"):
        _load(None, {"FLUJO__RUN__NOPE": "1"})


def test_unknown_state_scheme_is_a_config_error(tmp_path: Path) -> None:
    from flujo.state import open_backend

    cfg = _load(None, {"FLUJO__STATE__URI": "mysql://x"})
    with pytest.raises(ConfigError, match="unsupported scheme"):
        open_backend(cfg.state, tmp_path)
    relative = open_backend(_load(None).state, tmp_path)
    assert relative.path == tmp_path / ".flujo" / "flujo.db"
