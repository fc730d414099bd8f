"""Runs a pipeline with ``[run] policies = ["deny_words"]``: registered by hand, and found
through the installed package's entry point."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from flujo import ConfigError, Flujo, Pipeline, RunStatus, Step, StepStatus
from flujo.config import load_config
from flujo.plugins.manager import PluginManager

import flujo_plugin_example.plugin
from flujo_plugin_example.policy import DenyWords

DIST = "flujo-plugin-example"
CONFIG = """\
[state]
uri = "sqlite:///flujo.db"

[run]
policies = ["deny_words"]

[example]
words = ["password", "drop table"]
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "flujo.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def pipeline(calls: list[str]) -> Pipeline:
    def shout(text: str) -> str:
        calls.append(text)
        return text.upper()

    return Pipeline([Step.from_callable(shout, name="shout")], name="shout")


@pytest.fixture
def plugins() -> PluginManager:
    pm = PluginManager()
    info = pm.register(flujo_plugin_example.plugin, DIST)
    assert info.status == "ok", info.error
    return pm


def test_registration_record(plugins: PluginManager) -> None:
    (info,) = plugins.plugins
    assert info.name == DIST
    assert info.registered == {
        "policies": ["deny_words"],
        "vector_stores": ["example_dict"],
        "embedders": ["example_trigram"],
        "sandboxes": ["example_bwrap"],
        "evaluators": ["example_clean_output"],
        "tools": ["example.word_count"],
        "state_backends": ["example-sqlite"],
    }
    assert info.sections == ["example"]
    assert info.hooks == [
        "flujo_config_sections",
        "flujo_register_commands",
        "flujo_register_embedders",
        "flujo_register_evaluators",
        "flujo_register_policies",
        "flujo_register_sandboxes",
        "flujo_register_state_backends",
        "flujo_register_tools",
        "flujo_register_vector_stores",
        "flujo_run_view",
        "flujo_storage_migrations",
        "flujo_wrap_step",
    ]


def test_denied_input_is_blocked(
    config_file: Path, pipeline: Pipeline, plugins: PluginManager, calls: list[str]
) -> None:
    config = load_config(config_file, plugin_manager=plugins, environ={})
    with Flujo(pipeline, config=config) as runner:
        result = runner.run("my Password is hunter2")
    assert result.status is RunStatus.BLOCKED
    assert result.steps[0].status is StepStatus.BLOCKED
    assert result.error is not None
    assert "deny_words" in result.error
    assert "input contains 'password'" in result.error
    assert calls == []  # the agent was never called


def test_allowed_input_succeeds(
    config_file: Path, pipeline: Pipeline, plugins: PluginManager, calls: list[str]
) -> None:
    config = load_config(config_file, plugin_manager=plugins, environ={})
    with Flujo(pipeline, config=config) as runner:
        result = runner.run("passwords are hashed")
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "PASSWORDS ARE HASHED"
    assert calls == ["passwords are hashed"]


def test_env_override_of_words(
    config_file: Path, pipeline: Pipeline, plugins: PluginManager
) -> None:
    env = {"FLUJO__EXAMPLE__WORDS": '["hello"]'}
    config = load_config(config_file, plugin_manager=plugins, environ=env)
    with Flujo(pipeline, config=config) as runner:
        assert runner.run("hello there").status is RunStatus.BLOCKED
        assert runner.run("my password").status is RunStatus.SUCCEEDED


def test_policy_passed_in_code(tmp_path: Path, pipeline: Pipeline) -> None:
    config = load_config(None, plugin_manager=PluginManager(), environ={})
    config.state = config.state.model_copy(update={"uri": f"sqlite:///{tmp_path / 'f.db'}"})
    with Flujo(pipeline, config=config, policies=[DenyWords(["secret"])]) as runner:
        assert runner.run("top SECRET").status is RunStatus.BLOCKED
        assert runner.run("public").status is RunStatus.SUCCEEDED


def test_unknown_key_in_section_is_a_config_error(tmp_path: Path, plugins: PluginManager) -> None:
    path = tmp_path / "flujo.toml"
    path.write_text('[example]\nwords = ["a"]\nwrods = ["b"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[example\].*wrods"):
        load_config(path, plugin_manager=plugins, environ={})


def test_section_without_the_plugin_is_a_config_error(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[example\]"):
        load_config(config_file, plugin_manager=PluginManager(), environ={})


def _require_installed() -> None:
    try:
        distribution(DIST)
    except PackageNotFoundError:
        reason = f"{DIST} is not installed (pip install -e examples/flujo-plugin-example)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def test_found_through_entry_point() -> None:
    _require_installed()
    pm = PluginManager()
    pm.load_entry_points(environ={})
    info = {i.name: i for i in pm.plugins}[DIST]
    assert info.status == "ok", info.error
    assert info.entry_point == "flujo_plugin_example.plugin"
    assert info.registered == {
        "policies": ["deny_words"],
        "vector_stores": ["example_dict"],
        "embedders": ["example_trigram"],
        "sandboxes": ["example_bwrap"],
        "evaluators": ["example_clean_output"],
        "tools": ["example.word_count"],
        "state_backends": ["example-sqlite"],
    }
    assert "deny_words" in pm.registry.names("policies")


def test_entry_point_pipeline_run(config_file: Path, pipeline: Pipeline, calls: list[str]) -> None:
    _require_installed()
    # load_config loads the installed plugins itself when no manager is given.
    config = load_config(config_file, environ={"FLUJO_LOAD_PLUGINS": DIST})
    with Flujo(pipeline, config=config) as runner:
        assert runner.run("DROP TABLE users").status is RunStatus.BLOCKED
        assert runner.run("select 1").status is RunStatus.SUCCEEDED
    assert calls == ["select 1"]


@pytest.mark.parametrize(
    "environ",
    [
        {"FLUJO_DISABLE_PLUGINS": DIST},
        {"FLUJO_DISABLE_PLUGINS": "flujo_plugin_example"},  # -, _ and . compare alike
        {"FLUJO_LOAD_PLUGINS": ""},  # set but empty: load none
        {"FLUJO_LOAD_PLUGINS": "some-other-plugin"},
    ],
)
def test_disabled_by_distribution_name(environ: dict[str, str]) -> None:
    _require_installed()
    pm = PluginManager()
    pm.load_entry_points(environ=environ)
    info = {i.name: i for i in pm.plugins}[DIST]
    assert info.status == "disabled"
    assert "deny_words" not in pm.registry.names("policies")


def test_disabled_in_flujo_toml(tmp_path: Path) -> None:
    _require_installed()
    path = tmp_path / "flujo.toml"
    path.write_text(
        f'[plugins]\ndisable = ["{DIST}"]\n\n[example]\nwords = ["x"]\n', encoding="utf-8"
    )
    config = load_config(path, environ={})
    assert config.plugin_manager is not None
    assert DIST in config.plugin_manager.disabled
    assert any("[example]" in w for w in config.warnings)
