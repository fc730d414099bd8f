"""The pytest plugin ``flujo.testing.pytest_plugin``: its fixtures, used as plugin authors do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict

from flujo import ConfigError, Flujo, Pipeline, PluginError, Step
from flujo.config import FlujoConfig
from flujo.plugins.manager import PluginManager
from flujo.state import _builtin as _builtin_state
from flujo.state import open_backend
from flujo.testing.fake_openai import FakeOpenAIServer
from flujo.testing.pytest_plugin import PluginRegistrar, RegisteredPlugin

pytest_plugins = ["pytester"]

STRICT_INI = """
[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
"""


class DenySettings(BaseModel):
    """``[denywords]``: the words the plugin's policy refuses."""

    model_config = ConfigDict(extra="forbid")
    words: list[str] = ["secret"]


class DenyWords:
    """A policy built from ``[denywords]``."""

    name = "deny_words"

    def __init__(self, words: list[str]) -> None:
        self.words = words


class DenyWordsPlugin:
    """A plugin object: one policy factory and one config section."""

    def flujo_register_policies(self, register: Any) -> None:
        register(
            "deny_words",
            lambda config: DenyWords(config.section("denywords", DenySettings).words),
        )

    def flujo_config_sections(self) -> dict[str, type[BaseModel]]:
        return {"denywords": DenySettings}


class BrokenPlugin:
    """A plugin whose registration hook raises."""

    def flujo_register_policies(self, register: Any) -> None:
        raise RuntimeError("cannot register")


def assert_clean(pm: PluginManager) -> None:
    """Nothing of any plugin is left in ``pm``."""
    assert pm.plugins == []
    assert pm.config_sections() == {}
    assert pm.registry.names("policies") == []
    # Only the core's own registrations (its state backends, registered like a plugin's).
    assert pm.pm.get_plugins() == {_builtin_state}


# --------------------------------------------------------------------------- loading


def test_plugin_is_loaded_through_the_pytest11_entry_point(request: pytest.FixtureRequest) -> None:
    plugin = request.config.pluginmanager.get_plugin("flujo")
    assert plugin is not None
    assert plugin.__name__ == "flujo.testing.pytest_plugin"


def test_importing_the_plugin_stays_light() -> None:
    """The plugin loads in every pytest session: it imports nothing beyond pytest and flujo."""
    code = textwrap.dedent(
        """
        import json, sys
        import pytest, flujo
        before = set(sys.modules)
        import flujo.testing.pytest_plugin
        heavy = ["pydantic_ai", "openai", "httpx", "flujo.testing.fake_openai",
                 "flujo.testing.models", "flujo.testing.conformance", "flujo.state.sqlite"]
        print(json.dumps({"new": sorted(set(sys.modules) - before),
                          "heavy": [m for m in heavy if m in sys.modules]}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    report = json.loads(out.stdout)
    assert report["heavy"] == []
    assert set(report["new"]) <= {"flujo.testing", "flujo.testing.pytest_plugin"}


# --------------------------------------------------------------------------- flujo_plugin_manager


def test_flujo_plugin_manager_is_fresh(flujo_plugin_manager: PluginManager) -> None:
    assert isinstance(flujo_plugin_manager, PluginManager)
    assert_clean(flujo_plugin_manager)


# --------------------------------------------------------------------------- registered_plugin


def test_registered_plugin_registers_for_the_block(
    registered_plugin: PluginRegistrar, flujo_plugin_manager: PluginManager
) -> None:
    plugin = DenyWordsPlugin()
    with registered_plugin(plugin, name="deny-words", version="1.2") as reg:
        assert isinstance(reg, RegisteredPlugin)
        assert reg.plugin is plugin
        assert reg.name == "deny-words"
        assert reg.manager is flujo_plugin_manager
        assert reg.info.status == "ok"
        assert reg.info.version == "1.2"
        assert reg.info.registered == {"policies": ["deny_words"]}
        assert reg.info.sections == ["denywords"]
        assert [p.name for p in flujo_plugin_manager.plugins] == ["deny-words"]
        assert reg.config.plugin_manager is flujo_plugin_manager
        policy = reg.create("policies", "deny_words")
        assert isinstance(policy, DenyWords)
        assert policy.words == ["secret"]
    assert_clean(flujo_plugin_manager)


def test_registered_plugin_validates_settings(registered_plugin: PluginRegistrar) -> None:
    settings: dict[str, dict[str, Any]] = {
        "denywords": {"words": ["alpha", "beta"]},
        "run": {"max_requests": 3},
    }
    with registered_plugin(DenyWordsPlugin(), name="deny-words", settings=settings) as reg:
        assert reg.config.section("denywords", DenySettings).words == ["alpha", "beta"]
        assert reg.config.run.max_requests == 3
        assert reg.create("policies", "deny_words").words == ["alpha", "beta"]


def test_registered_plugin_rejects_invalid_settings_and_cleans_up(
    registered_plugin: PluginRegistrar, flujo_plugin_manager: PluginManager
) -> None:
    with (
        pytest.raises(ConfigError, match=r"\[denywords\]: unknown key 'colour'"),
        registered_plugin(DenyWordsPlugin(), settings={"denywords": {"colour": "red"}}),
    ):
        pass
    assert_clean(flujo_plugin_manager)


def test_registered_plugin_reads_a_config_file(
    registered_plugin: PluginRegistrar, tmp_path: Path
) -> None:
    path = tmp_path / "custom.toml"
    path.write_text('[denywords]\nwords = ["from-file"]\n[state]\nuri = "sqlite:///x.db"\n')
    with registered_plugin(DenyWordsPlugin(), config_file=path) as reg:
        assert reg.config.path == path.resolve()
        assert reg.config.section("denywords", DenySettings).words == ["from-file"]


def test_registered_plugin_ignores_flujo_toml_of_the_working_directory(
    registered_plugin: PluginRegistrar, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "flujo.toml").write_text("[not_a_section]\nx = 1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLUJO__RUN__MAX_REQUESTS", "7")
    with registered_plugin(DenyWordsPlugin()) as reg:
        assert reg.config.path is not None
        assert reg.config.path.parent != tmp_path
        assert reg.config.run.max_requests is None


def test_registered_plugin_names_default_to_the_object(registered_plugin: PluginRegistrar) -> None:
    with registered_plugin(DenyWordsPlugin()) as reg:
        assert reg.name == "DenyWordsPlugin"
    with registered_plugin(sys.modules[__name__]) as reg:
        assert reg.name == __name__


def test_registered_plugin_failure_raises_when_strict(
    registered_plugin: PluginRegistrar, flujo_plugin_manager: PluginManager
) -> None:
    with (
        pytest.raises(PluginError, match="cannot register"),
        registered_plugin(BrokenPlugin(), name="broken"),
    ):
        pass
    assert_clean(flujo_plugin_manager)


def test_registered_plugin_failure_is_inspectable_when_not_strict(
    registered_plugin: PluginRegistrar, flujo_plugin_manager: PluginManager
) -> None:
    with registered_plugin(BrokenPlugin(), name="broken", strict=False) as reg:
        assert reg.info.status == "error"
        assert reg.info.error is not None
        assert "cannot register" in reg.info.error
        assert [p.name for p in flujo_plugin_manager.plugins] == ["broken"]
    assert_clean(flujo_plugin_manager)


def test_registered_plugins_nest_and_can_register_again(
    registered_plugin: PluginRegistrar, flujo_plugin_manager: PluginManager
) -> None:
    with registered_plugin(DenyWordsPlugin(), name="first"):
        with registered_plugin(BrokenPlugin(), name="second", strict=False) as inner:
            assert [p.name for p in inner.manager.plugins] == ["first", "second"]
        assert [p.name for p in flujo_plugin_manager.plugins] == ["first"]
    assert_clean(flujo_plugin_manager)
    with registered_plugin(DenyWordsPlugin(), name="first") as again:
        assert again.info.registered == {"policies": ["deny_words"]}


def test_registered_plugin_refuses_a_taken_name(
    registered_plugin: PluginRegistrar, flujo_plugin_manager: PluginManager
) -> None:
    """A name already in the manager is refused, and the plugin holding it is left alone."""
    flujo_plugin_manager.register(DenyWordsPlugin(), "taken")
    with (
        pytest.raises(ValueError, match="'taken' is already registered"),
        registered_plugin(BrokenPlugin(), name="taken"),
    ):
        pass
    assert [p.name for p in flujo_plugin_manager.plugins] == ["taken"]
    assert flujo_plugin_manager.registry.names("policies") == ["deny_words"]


def test_registered_plugin_cleans_up_after_a_strict_manager_raises(
    registered_plugin: PluginRegistrar,
) -> None:
    strict = PluginManager(strict=True)
    with (
        pytest.raises(PluginError, match="cannot register"),
        registered_plugin(BrokenPlugin(), name="broken", manager=strict, strict=False),
    ):
        pass
    assert_clean(strict)


def test_registered_plugin_into_another_manager(
    registered_plugin: PluginRegistrar, flujo_plugin_manager: PluginManager
) -> None:
    other = PluginManager()
    with registered_plugin(DenyWordsPlugin(), name="elsewhere", manager=other) as reg:
        assert reg.manager is other
        assert [p.name for p in other.plugins] == ["elsewhere"]
        assert flujo_plugin_manager.plugins == []
    assert_clean(other)


# --------------------------------------------------------------------------- flujo_config


def test_flujo_config_lives_in_tmp_path(
    flujo_config: FlujoConfig, flujo_plugin_manager: PluginManager, tmp_path: Path
) -> None:
    assert isinstance(flujo_config, FlujoConfig)
    assert flujo_config.root == tmp_path
    assert flujo_config.plugin_manager is flujo_plugin_manager
    backend: Any = open_backend(flujo_config.state, flujo_config.root)
    assert Path(backend.path) == tmp_path / ".flujo" / "flujo.db"


def test_flujo_config_ignores_the_environment(
    monkeypatch: pytest.MonkeyPatch, pytester: pytest.Pytester
) -> None:
    """Overrides in the process environment do not leak into ``flujo_config``."""
    monkeypatch.setenv("FLUJO__RUN__MAX_REQUESTS", "7")
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        """
        def test_env(flujo_config):
            assert flujo_config.run.max_requests is None
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.parametrize("dsn", [False, True], ids=["no-dsn", "dsn"])
def test_flujo_state_uri_runs_a_test_on_each_backend(
    monkeypatch: pytest.MonkeyPatch, pytester: pytest.Pytester, dsn: bool
) -> None:
    """``flujo_state_uri``: the test runs on SQLite (a file in its ``tmp_path``) and on
    PostgreSQL (a throwaway schema); without ``FLUJO_TEST_POSTGRES_DSN`` only the PostgreSQL
    run skips, saying why."""
    if dsn and not os.environ.get("FLUJO_TEST_POSTGRES_DSN"):
        pytest.skip("no PostgreSQL: set FLUJO_TEST_POSTGRES_DSN (.ci/run does)")
    if not dsn:
        monkeypatch.delenv("FLUJO_TEST_POSTGRES_DSN", raising=False)
        monkeypatch.delenv("CI", raising=False)
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        """
        import asyncio

        from flujo import FlujoConfig
        from flujo.config import StateSettings
        from flujo.state import open_state

        def test_opens(flujo_state_uri, tmp_path):
            if flujo_state_uri.startswith("sqlite"):
                assert flujo_state_uri == f"sqlite:///{tmp_path / 'state.db'}"
            config = FlujoConfig(state=StateSettings(uri=flujo_state_uri))

            async def go():
                state = await open_state(config)
                try:
                    assert await state.list_runs() == []
                finally:
                    await state.close()

            asyncio.run(go())
        """
    )
    found = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs", "-v")
    if dsn:
        found.assert_outcomes(passed=2)
    else:
        found.assert_outcomes(passed=1, skipped=1)
        found.stdout.fnmatch_lines(["*test_opens?sqlite? PASSED*", "*no PostgreSQL*"])


def test_flujo_config_keeps_an_existing_file(pytester: pytest.Pytester) -> None:
    """A ``flujo.toml`` another fixture wrote into ``tmp_path`` first is the one loaded."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def my_toml(tmp_path):
            (tmp_path / "flujo.toml").write_text("[run]\\nmax_requests = 5\\n")

        def test_uses_it(my_toml, flujo_config):
            assert flujo_config.run.max_requests == 5
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.asyncio
async def test_flujo_config_runs_a_pipeline_with_state_in_tmp_path(
    flujo_config: FlujoConfig, tmp_path: Path
) -> None:
    def shout(text: str) -> str:
        return text.upper()

    async with Flujo(Pipeline([Step.from_callable(shout)]), config=flujo_config) as runner:
        result = await runner.run_async("hi")
    assert result.succeeded
    assert result.output == "HI"
    assert (tmp_path / ".flujo" / "flujo.db").is_file()


# --------------------------------------------------------------------------- fake_openai


def test_fake_openai_points_openai_clients_at_the_server(fake_openai: FakeOpenAIServer) -> None:
    assert isinstance(fake_openai, FakeOpenAIServer)
    assert os.environ["OPENAI_BASE_URL"] == fake_openai.base_url
    assert os.environ["OPENAI_API_KEY"] == "test"
    fake_openai.queue("hello from the fake")
    response = httpx.post(
        f"{os.environ['OPENAI_BASE_URL']}/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "hello from the fake"
    assert [r.path for r in fake_openai.requests] == ["/v1/chat/completions"]


def test_fake_openai_restores_the_environment_and_stops(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.example.invalid/v1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        """
        import os
        import httpx
        import pytest

        SEEN = {}

        def test_uses_fake(fake_openai):
            SEEN["url"] = fake_openai.base_url
            assert os.environ["OPENAI_BASE_URL"] == fake_openai.base_url

        def test_after():
            assert os.environ["OPENAI_BASE_URL"] == "https://api.example.invalid/v1"
            assert "OPENAI_API_KEY" not in os.environ
            with pytest.raises(httpx.TransportError):
                httpx.post(SEEN["url"] + "/chat/completions", json={}, timeout=5)
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly").assert_outcomes(
        passed=2
    )


# --------------------------------------------------------------------------- as a plugin author


def test_a_plugin_authors_test_suite(pytester: pytest.Pytester) -> None:
    """A plugin package's tests, in strict asyncio mode, using the fixtures and a suite."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        my_plugin="""
        from pydantic import BaseModel, ConfigDict

        from flujo import PolicyDecision, hookimpl


        class Settings(BaseModel):
            model_config = ConfigDict(extra="forbid")
            word: str = "secret"


        class DenyWord:
            name = "deny_word"

            def __init__(self, word):
                self.word = word

            def inspect_input(self, context, data):
                if isinstance(data, str) and self.word in data:
                    return PolicyDecision.DENY, data
                return PolicyDecision.ALLOW, data

            def inspect_tool_call(self, context, tool_name, args):
                return PolicyDecision.ALLOW


        @hookimpl
        def flujo_register_policies(register):
            register("deny_word", lambda config: DenyWord(config.section("deny", Settings).word))


        @hookimpl
        def flujo_config_sections():
            return {"deny": Settings}
        """,
        test_my_plugin="""
        import pytest

        import my_plugin
        from flujo import Flujo, Pipeline, RunStatus, Step
        from flujo.testing.conformance import GovernancePolicyConformance


        def test_registers(registered_plugin):
            with registered_plugin(my_plugin, name="my-plugin") as reg:
                assert reg.info.registered == {"policies": ["deny_word"]}


        class TestDenyWord(GovernancePolicyConformance):
            @pytest.fixture
            def policy(self, registered_plugin):
                with registered_plugin(my_plugin, settings={"deny": {"word": "xyzzy"}}) as reg:
                    yield reg.create("policies", "deny_word")

            @pytest.fixture
            def denied_input(self):
                return "say xyzzy"


        @pytest.mark.asyncio
        async def test_blocks_in_a_run(registered_plugin, flujo_config):
            with registered_plugin(my_plugin) as reg:
                policy = reg.create("policies", "deny_word")
            step = Step.from_callable(lambda text: text, name="echo")
            async with Flujo(Pipeline([step]), config=flujo_config, policies=[policy]) as runner:
                result = await runner.run_async("a secret")
            assert result.status is RunStatus.BLOCKED
        """,
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    # 4 more skips: the policy has no `scrub`, so the scrub/restore checks do not apply.
    result.assert_outcomes(passed=10, skipped=6)


def test_help_imports_reports_what_flujo_help_imported(tmp_path: Path) -> None:
    from flujo.testing.cli import help_imports

    out, imported = help_imports(["flujo.cli._runs", "json"], cwd=tmp_path)
    assert "Commands:" in out
    assert imported == ["json"]  # lazy core commands stay unimported; json is used by the probe
