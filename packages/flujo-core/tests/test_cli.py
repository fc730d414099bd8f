"""The `flujo` command line: the JSON contract, exit codes and error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flujo.testing.cli import run_flujo as run_cli

PIPE = """
from pydantic import BaseModel
from flujo import Pipeline, PipelineContext, Step

class Ctx(PipelineContext):
    customer: str = "anon"

class Ticket(BaseModel):
    subject: str
    priority: int = 1

def triage(text: str, context: Ctx) -> Ticket:
    return Ticket(subject=f"{context.customer}: {text.strip()}", priority=len(text.strip()))

def reply(ticket: Ticket) -> str:
    if ticket.subject.endswith("boom"):
        raise RuntimeError("cannot reply to boom")
    return f"re: {ticket.subject} (p{ticket.priority})"

pipeline = Step.from_callable(triage) >> Step.from_callable(reply)

def make_pipeline():
    return Pipeline([Step.from_callable(reply)])

not_a_pipeline = 42

lone_step = Step.from_callable(reply, name="lone")
"""

ENV = {"FLUJO_LOAD_PLUGINS": ""}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pipe.py").write_text(PIPE)
    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///runs.db"\n')
    return tmp_path


def test_run_json_shape(project: Path) -> None:
    proc = run_cli(
        "run",
        "pipe.py:pipeline",
        "--input",
        "hello",
        "--context",
        '{"customer": "ana"}',
        "--json",
        cwd=project,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"run_id", "status", "output", "error", "steps", "usage"}
    assert data["status"] == "succeeded"
    assert data["error"] is None
    assert data["output"] == "re: ana: hello (p5)"
    assert [s["name"] for s in data["steps"]] == ["triage", "reply"]
    first = data["steps"][0]
    assert {"name", "status", "output", "error", "attempts", "latency_ms"} <= set(first)
    assert first["output"] == {"subject": "ana: hello", "priority": 5}
    assert first["attempts"] == 1
    assert first["latency_ms"] >= 0
    assert set(data["usage"]) >= {
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "requests",
        "cost_usd",
    }

    listed = run_cli("runs", "list", "--json", cwd=project, env=ENV)
    rows = json.loads(listed.stdout)
    assert [r["run_id"] for r in rows] == [data["run_id"]]
    assert "steps" not in rows[0]
    assert rows[0]["status"] == "succeeded"

    shown = run_cli("runs", "show", data["run_id"], "--json", cwd=project, env=ENV)
    assert json.loads(shown.stdout)["steps"][1]["output"] == "re: ana: hello (p5)"
    human = run_cli("runs", "show", data["run_id"], cwd=project, env=ENV)
    assert "succeeded" in human.stdout
    assert "triage" in human.stdout


def test_input_from_file_and_stdin_and_function_targets(project: Path) -> None:
    (project / "in.txt").write_text("from a file\n")
    from_file = run_cli("run", "pipe.py:pipeline", "--input", "@in.txt", cwd=project, env=ENV)
    assert from_file.stdout.strip() == "re: anon: from a file (p11)"
    from_stdin = run_cli(
        "run", "pipe.py:pipeline", "--input", "-", cwd=project, env=ENV, input="piped"
    )
    assert from_stdin.stdout.strip() == "re: anon: piped (p5)"
    structured = run_cli(
        "run", "pipe.py:make_pipeline", "--input", '{"subject": "s"}', cwd=project, env=ENV
    )
    assert structured.returncode == 0, structured.stderr
    assert structured.stdout.strip() == "re: s (p1)"


def test_failed_run_exits_1_and_is_listed_by_status(project: Path) -> None:
    proc = run_cli("run", "pipe.py:pipeline", "--input", "boom", "--json", cwd=project, env=ENV)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["status"] == "failed"
    assert data["error"] == "RuntimeError: cannot reply to boom"
    assert data["steps"][1]["status"] == "failed"
    failed = json.loads(
        run_cli("runs", "list", "--status", "failed", "--json", cwd=project, env=ENV).stdout
    )
    assert [r["run_id"] for r in failed] == [data["run_id"]]
    assert (
        json.loads(
            run_cli("runs", "list", "--status", "succeeded", "--json", cwd=project, env=ENV).stdout
        )
        == []
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", "missing.py:pipeline", "--input", "x"],
            "error: target 'missing.py:pipeline': no such file",
        ),
        (
            ["run", "pipe.py:nope", "--input", "x"],
            "error: target 'pipe.py:nope': pipe.py has no attribute 'nope'",
        ),
        (["run", "pipe.py:not_a_pipeline", "--input", "x"], "is a int, not a Pipeline or a Step"),
        (
            # JSON text that is not a Ticket: the message names the missing field.
            ["run", "pipe.py:make_pipeline", "--input", '{"priority": 2}'],
            "error: input to step 'reply' does not validate as Ticket: subject: Field required",
        ),
        (
            ["run", "no_such_module:p", "--input", "x"],
            "error: target 'no_such_module:p': no module named 'no_such_module'",
        ),
        (["run", "pipe.py", "--input", "x"], "expected path/to/file.py:name or module:name"),
        (
            ["run", "pipe.py:make_pipeline", "--input", "not json"],
            "error: input to step 'reply' does not validate as Ticket",
        ),
        (
            ["run", "pipe.py:pipeline", "--input", "x", "--context", "[1]"],
            "error: --context: expected a JSON object",
        ),
        (
            ["run", "pipe.py:pipeline", "--input", "x", "--context", '{"age": 3}'],
            "error: context does not validate as Ctx: age: Extra inputs are not permitted",
        ),
        (
            ["run", "pipe.py:pipeline", "--input", "@nope.txt"],
            "error: --input @nope.txt: cannot read",
        ),
        (["runs", "show", "nope"], "error: no run with id 'nope'"),
        (["runs", "resume", "nope"], "error: no run with id 'nope'"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(project: Path, args: list[str], message: str) -> None:
    from flujo.testing.state import create_core_state

    create_core_state(project / "flujo.toml")  # `runs show nope`: a database without `nope`
    proc = run_cli(*args, cwd=project, env=ENV)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_bad_config_is_a_user_error_and_debug_shows_the_traceback(project: Path) -> None:
    (project / "flujo.toml").write_text("[state]\nurl = 'x'\n")
    proc = run_cli("runs", "list", cwd=project, env=ENV)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: {project / 'flujo.toml'}: [state]: unknown key 'url' "
        "(allowed: uri, synchronous, lease_s, pool_size)"
    )
    debug = run_cli("--debug", "runs", "list", cwd=project, env=ENV)
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr
    # Listing plugins still works with a broken config, and reports it; help just works.
    listed = run_cli("plugins", "--json", cwd=project, env=ENV)
    assert listed.returncode == 2
    assert {p["status"] for p in json.loads(listed.stdout)} <= {"disabled"}
    assert listed.stderr.startswith(f"error: {project / 'flujo.toml'}: [state]")
    assert run_cli("--help", cwd=project, env=ENV).returncode == 0


def test_version_and_config_show(project: Path) -> None:
    import flujo

    version = run_cli("--version", cwd=project, env=ENV)
    assert version.stdout.strip() == f"flujo, version {flujo.__version__}"
    shown = run_cli(
        "config", "show", "--json", cwd=project, env={**ENV, "FLUJO__RUN__MAX_REQUESTS": "9"}
    )
    data = json.loads(shown.stdout)
    assert data["path"] == str(project / "flujo.toml")
    assert data["config"]["state"]["uri"] == "sqlite:///runs.db"
    assert data["config"]["run"]["max_requests"] == 9
    text = run_cli("config", "show", cwd=project, env=ENV)
    assert 'uri = "sqlite:///runs.db"' in text.stdout
    assert "# max_requests is unset" in text.stdout


@pytest.mark.parametrize(
    "content",
    [
        b"[run]\nmax_requests = 'caf\xe9'\n",
        b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n",
        b"[" + b".".join([b"a"] * 3000) + b"]\n",
        b"[state\n",
        b"[plugins]\ndisable = 3\n",
    ],
    ids=["not-utf8", "deep-arrays", "deep-tables", "not-toml", "bad-plugins-table"],
)
def test_a_hostile_config_is_one_line_exit_2_and_help_still_works(
    project: Path, content: bytes
) -> None:
    """Every command that needs the config names the file; --help still works; `flujo plugins`
    ends with the error, exit 2 (with a plugin installed: tests/integration/test_hostile_config).
    """
    path = project / "flujo.toml"
    path.write_bytes(content)
    for args in (["runs", "list"], ["config", "show"]):
        proc = run_cli(*args, cwd=project, env=ENV)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, (args, proc.stderr)
        assert lines[0].startswith(f"error: {path}"), (args, proc.stderr)
        assert "internal error" not in proc.stderr
    shown = run_cli("--help", cwd=project, env=ENV)
    assert shown.returncode == 0, shown.stderr
    assert "runs " in shown.stdout
    assert shown.stderr == ""
    listed = run_cli("plugins", "--json", cwd=project, env=ENV)
    assert listed.returncode == 2
    assert listed.stderr.startswith(f"error: {path}")
    assert len(listed.stderr.splitlines()) == 1


def test_flujo_config_pointing_nowhere_or_at_a_folder(project: Path) -> None:
    for target, message in (
        (project / "nowhere.toml", f"error: FLUJO_CONFIG={project / 'nowhere.toml'}: no such file"),
        (project, f"error: {project}: is a directory, not a config file"),
    ):
        proc = run_cli("runs", "list", cwd=project, env={**ENV, "FLUJO_CONFIG": str(target)})
        assert (proc.returncode, proc.stderr.strip()) == (2, message)
        assert run_cli("--help", cwd=project, env={"FLUJO_CONFIG": str(target)}).returncode == 0
    assert not (project / "runs.db").exists()


def test_a_bare_step_runs_as_a_one_step_pipeline(project: Path) -> None:
    proc = run_cli(
        "run", "pipe.py:lone_step", "--input", '{"subject": "hi"}', "--json", cwd=project, env=ENV
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["status"], result["output"]) == ("succeeded", "re: hi (p1)")
    assert [s["name"] for s in result["steps"]] == ["lone"]


def test_a_missing_api_key_is_a_config_error_before_anything_is_stored(project: Path) -> None:
    (project / "agent_pipe.py").write_text(
        "from flujo import Step, make_agent_async\n"
        "pipeline = Step('draft', make_agent_async('openai:gpt-4o-mini', 'Be brief.'))\n"
    )
    proc = run_cli(
        "run",
        "agent_pipe.py:pipeline",
        "--input",
        "hi",
        cwd=project,
        env={**ENV, "OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""},
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: agent 'draft': ")
    assert "OPENAI_API_KEY" in lines[0]
    assert proc.stdout == ""
    assert not (project / "runs.db").exists(), "a run was stored for a configuration error"


def test_plugins_hook_filter_names_unknown_hooks_and_empty_results(project: Path) -> None:
    unknown = run_cli("plugins", "--hook", "nope", cwd=project, env=ENV)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: --hook: no hook named 'nope' (hooks: ")
    assert "flujo_retriever" in unknown.stderr
    none = run_cli("plugins", "--hook", "flujo_retriever", cwd=project, env=ENV)
    assert (none.returncode, none.stdout.strip()) == (0, "no plugin implements flujo_retriever")
