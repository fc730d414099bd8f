"""Plugin discovery, isolation, registration and the `flujo plugins` listing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from flujo import ConfigError, PluginError, hookimpl
from flujo.config import load_config
from flujo.plugins.manager import PluginManager
from flujo.testing.cli import run_flujo as run_cli

MakeDist = Callable[..., Path]

GOOD = """
from flujo import hookimpl
from flujo.domain.interfaces import PolicyDecision

class Allow:
    name = "allow_all"
    def inspect_input(self, context, data):
        return PolicyDecision.ALLOW, data
    def inspect_tool_call(self, context, tool_name, args):
        return PolicyDecision.ALLOW

@hookimpl
def flujo_register_policies(register):
    register("allow_all", lambda config: Allow())

@hookimpl
def flujo_register_sandboxes(register):
    register("shared_name", lambda config: object())
"""

COLLIDING = """
def flujo_register_sandboxes(register):  # no marker: flujo_* functions are hooks anyway
    register("shared_name", lambda config: object())
"""

BROKEN_IMPORT = "raise RuntimeError('boom at import')\n"

UNKNOWN_HOOK = """
from flujo import hookimpl

@hookimpl
def flujo_register_polices(register):  # misspelt
    pass
"""

BROKEN_REGISTER = """
def flujo_register_tools(register):
    register("ok_tool", lambda config: print)
    raise ValueError("half-way")
"""


def _load(env: dict[str, str], disable: tuple[str, ...] = ()) -> PluginManager:
    manager = PluginManager()
    manager.load_entry_points(disable=disable, environ=env)
    return manager


def _info(manager: PluginManager, name: str) -> dict[str, object]:
    return next(p.to_dict() for p in manager.plugins if p.name == name)


ONLY = {"FLUJO_LOAD_PLUGINS": "flujo-good,flujo-other,flujo-broken,flujo-unknown,flujo-halfway"}


def test_good_plugin_is_loaded_and_lists_what_it_registered(make_dist: MakeDist) -> None:
    make_dist("flujo-good", "flujo_good", GOOD)
    manager = _load({"FLUJO_LOAD_PLUGINS": "flujo-good"})
    info = _info(manager, "flujo-good")
    assert info["status"] == "ok"
    assert info["version"] == "1.0"
    assert info["entry_point"] == "flujo_good"
    assert info["hooks"] == ["flujo_register_policies", "flujo_register_sandboxes"]
    assert info["registered"] == {"policies": ["allow_all"], "sandboxes": ["shared_name"]}
    assert manager.registry.names("policies") == ["allow_all"]


def test_broken_plugins_are_recorded_and_the_rest_keep_working(make_dist: MakeDist) -> None:
    make_dist("flujo-good", "flujo_good", GOOD)
    make_dist("flujo-other", "flujo_other", COLLIDING)
    make_dist("flujo-broken", "flujo_broken", BROKEN_IMPORT)
    make_dist("flujo-unknown", "flujo_unknown", UNKNOWN_HOOK)
    make_dist("flujo-halfway", "flujo_halfway", BROKEN_REGISTER)
    manager = _load(ONLY)

    assert _info(manager, "flujo-good")["status"] == "ok"
    broken = _info(manager, "flujo-broken")
    assert broken["status"] == "error"
    assert "boom at import" in str(broken["error"])
    unknown = _info(manager, "flujo-unknown")
    assert unknown["status"] == "error"
    assert "unknown hook(s): flujo_register_polices" in str(unknown["error"])
    colliding = _info(manager, "flujo-other")
    assert colliding["status"] == "error"
    assert "'shared_name' is already registered by 'flujo-good'" in str(colliding["error"])
    halfway = _info(manager, "flujo-halfway")
    assert halfway["status"] == "error"
    assert "half-way" in str(halfway["error"])
    # What a failing plugin registered before failing is withdrawn; the first owner keeps its name.
    assert manager.registry.names("tools") == []
    assert manager.registry.get("sandboxes", "shared_name").owner == "flujo-good"
    assert manager.implementations("flujo_register_tools") == []


def test_strict_mode_makes_load_errors_fatal(make_dist: MakeDist) -> None:
    make_dist("flujo-broken", "flujo_broken", BROKEN_IMPORT)
    with pytest.raises(PluginError, match=r"flujo-broken.*boom at import"):
        _load({"FLUJO_LOAD_PLUGINS": "flujo-broken", "FLUJO_STRICT_PLUGINS": "1"})


def test_allow_and_deny_lists_apply_before_import(make_dist: MakeDist) -> None:
    make_dist("flujo-broken", "flujo_broken", BROKEN_IMPORT)
    make_dist("flujo-good", "flujo_good", GOOD)
    # A plugin that raises at import never runs when disabled, by env or by config.
    for manager in (
        _load({**ONLY, "FLUJO_DISABLE_PLUGINS": "flujo-broken"}),
        _load(ONLY, disable=("Flujo_Broken",)),
    ):
        assert _info(manager, "flujo-broken")["status"] == "disabled"
        assert _info(manager, "flujo-good")["status"] == "ok"
    none = _load({"FLUJO_LOAD_PLUGINS": ""})
    assert {p.status for p in none.plugins} <= {"disabled"}
    assert none.registry.names("policies") == []


def test_invalid_hook_signature_is_reported() -> None:
    class Bad:
        @hookimpl
        def flujo_register_policies(self, register, surprise):  # type: ignore[no-untyped-def]
            pass

    manager = PluginManager()
    info = manager.register(Bad(), "bad-plugin")
    assert info.status == "error"
    assert "surprise" in str(info.error)


def test_config_sections_validate_and_report_owner(tmp_path: Path) -> None:
    from pydantic import BaseModel, ConfigDict

    class ExampleSettings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        words: list[str] = []

    class Owner:
        @hookimpl
        def flujo_config_sections(self) -> dict[str, type[BaseModel]]:
            return {"example": ExampleSettings}

    manager = PluginManager()
    assert manager.register(Owner(), "owner").sections == ["example"]
    toml = tmp_path / "flujo.toml"
    toml.write_text('[example]\nwords = ["a"]\n')
    cfg = load_config(toml, plugin_manager=manager, environ={})
    assert cfg.section("example", ExampleSettings).words == ["a"]

    toml.write_text('[example]\nwrods = ["a"]\n')
    with pytest.raises(ConfigError, match=r"\[example\]: unknown key 'wrods' \(allowed: words\)"):
        load_config(toml, plugin_manager=manager, environ={})

    # A second plugin claiming the same section is refused, the first keeps it.
    info = manager.register(Owner(), "thief")
    assert info.status == "error"
    assert "already owned by 'owner'" in str(info.error)


def test_section_of_disabled_plugin_is_ignored_with_a_warning(
    make_dist: MakeDist, tmp_path: Path
) -> None:
    make_dist("flujo-good", "flujo_good", GOOD)
    toml = tmp_path / "flujo.toml"
    toml.write_text('[plugins]\ndisable = ["flujo-good"]\n\n[good]\nx = 1\n')
    cfg = load_config(toml, environ={"FLUJO_LOAD_PLUGINS": "flujo-good"})
    assert any("[good] is ignored" in w and "flujo-good" in w for w in cfg.warnings)
    assert "good" not in cfg.sections


def test_first_party_section_without_its_plugin_names_the_package(tmp_path: Path) -> None:
    toml = tmp_path / "flujo.toml"
    toml.write_text("[memory]\nstore = 'qdrant'\n")
    with pytest.raises(
        ConfigError, match="needs the 'flujo-memory' plugin: pip install flujo-memory"
    ):
        load_config(toml, plugin_manager=PluginManager(), environ={})


def test_flujo_plugins_cli(make_dist: MakeDist, tmp_path: Path) -> None:
    make_dist("flujo-good", "flujo_good", GOOD)
    make_dist("flujo-broken", "flujo_broken", BROKEN_IMPORT)
    env = {"FLUJO_LOAD_PLUGINS": "flujo-good,flujo-broken"}
    proc = run_cli("plugins", "--json", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    listed = {p["name"]: p for p in json.loads(proc.stdout)}
    assert listed["flujo-good"]["status"] == "ok"
    assert listed["flujo-good"]["registered"] == {
        "policies": ["allow_all"],
        "sandboxes": ["shared_name"],
    }
    assert listed["flujo-broken"]["status"] == "error"
    assert set(listed["flujo-good"]) == {
        "name",
        "version",
        "entry_point",
        "hooks",
        "registered",
        "sections",
        "status",
        "error",
    }

    hooked = run_cli(
        "plugins", "--json", "--hook", "flujo_register_policies", cwd=tmp_path, env=env
    )
    assert [p["name"] for p in json.loads(hooked.stdout)] == ["flujo-good"]

    table = run_cli("plugins", cwd=tmp_path, env=env)
    assert table.returncode == 0
    assert "flujo-good" in table.stdout
    assert "policies: allow_all" in table.stdout
    assert "boom at import" in table.stdout

    # Other commands keep working with a broken plugin installed.
    assert run_cli("--help", cwd=tmp_path, env=env).returncode == 0


def test_plugin_commands_load_lazily(make_dist: MakeDist, tmp_path: Path) -> None:
    make_dist(
        "flujo-cmd",
        "flujo_cmd",
        """
        from flujo.cli import lazy_command

        def flujo_register_commands(cli):
            cli.add_command(lazy_command("hello", "flujo_cmd_impl:hello", help="Say hello."))
    """,
    )
    (tmp_path / "site" / "flujo_cmd_impl.py").write_text(
        "import click\nprint('IMPORTED', flush=True)\n"
        "@click.command()\n@click.option('--name', default='world')\n"
        "def hello(name):\n    click.echo(f'hello {name}')\n"
    )
    env = {"FLUJO_LOAD_PLUGINS": "flujo-cmd"}
    help_out = run_cli("--help", cwd=tmp_path, env=env)
    assert "hello" in help_out.stdout
    assert "Say hello." in help_out.stdout
    assert "IMPORTED" not in help_out.stdout
    ran = run_cli("hello", "--name", "ana", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["IMPORTED", "hello ana"]


def test_async_observers_are_rejected_with_a_clear_error() -> None:
    class AsyncObserver:
        @hookimpl
        async def flujo_run_finalized(self, event: object) -> None:
            raise AssertionError("never awaited")

    info = PluginManager().register(AsyncObserver(), "async-observer")
    assert info.status == "error"
    assert "flujo_run_finalized must be a plain function" in str(info.error)


def test_a_plugin_failing_to_add_commands_is_withdrawn_entirely() -> None:
    import click

    class BadCommands:
        @hookimpl
        def flujo_register_policies(self, register: object) -> None:
            register("p", lambda config: object())  # type: ignore[operator]

        @hookimpl
        def flujo_register_commands(self, cli: click.Group) -> None:
            raise RuntimeError("no commands today")

    manager = PluginManager()
    assert manager.register(BadCommands(), "bad-commands").status == "ok"
    manager.add_commands(click.Group("flujo"))
    info = next(p for p in manager.plugins if p.name == "bad-commands")
    assert info.status == "error"
    assert "no commands today" in str(info.error)
    assert manager.registry.names("policies") == []
    assert manager.implementations("flujo_register_policies") == []


def test_a_plugin_command_exit_code_is_the_process_exit_code(
    make_dist: MakeDist, tmp_path: Path
) -> None:
    make_dist(
        "flujo-gate",
        "flujo_gate",
        """
        import click

        @click.command("gate")
        @click.pass_context
        def gate(ctx):
            ctx.exit(3)

        def flujo_register_commands(cli):
            cli.add_command(gate)
    """,
    )
    proc = run_cli("gate", cwd=tmp_path, env={"FLUJO_LOAD_PLUGINS": "flujo-gate"})
    assert proc.returncode == 3, proc.stderr
