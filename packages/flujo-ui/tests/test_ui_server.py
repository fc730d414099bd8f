"""The web app against real runs on SQLite and PostgreSQL (Starlette's TestClient, in
process): runs list filters, paging and counts, a run's step tree and plugin sections,
approve/reject through the runner, and the security checks (Host, Origin, token, CSRF,
escaping)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from ui_testkit import (
    XSS,
    AskForRefunds,
    DecisionsPlugin,
    ViewPlugin,
    make_config,
    populate,
    run,
    write_pipes,
)

from flujo.plugin import FlujoConfig, RunRecord, RunStatus, hookimpl, open_state
from flujo_ui.app import create_app
from flujo_ui.security import COOKIE

TOKEN = "test-token-0123456789"
BASE = "http://127.0.0.1:8765"


@dataclass
class Served:
    client: TestClient
    config: FlujoConfig
    ids: dict[str, str]
    plugin: ViewPlugin
    folder: Path


@pytest.fixture
def served(tmp_path: Path, state_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.chdir(tmp_path)
    plugin = ViewPlugin()
    config = make_config(tmp_path, state_uri, plugin, "", DecisionsPlugin())
    pipes = write_pipes(tmp_path)
    ids = asyncio.run(populate(config, pipes))
    app = create_app(config, token=TOKEN, port=8765)
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        yield Served(client, config, ids, plugin, tmp_path)


def _login(client: TestClient) -> None:
    answer = client.get(f"/login?token={TOKEN}")
    assert answer.status_code == 303
    assert COOKIE in answer.cookies


def _record(config: FlujoConfig, run_id: str) -> RunRecord:
    async def read() -> RunRecord:
        state = await open_state(config, create=False, read_only=True)
        try:
            run = await state.get_run(run_id)
            assert run is not None
            return run
        finally:
            await state.close()

    return asyncio.run(read())


def _status(config: FlujoConfig, run_id: str) -> RunStatus:
    return _record(config, run_id).status


# ----------------------------------------------------------------------------- runs list


def test_runs_list_shows_every_run_with_counts_by_status(served: Served) -> None:
    page = served.client.get("/runs")
    assert page.status_code == 200
    for run_id in served.ids.values():
        assert f'href="/runs/{run_id}"' in page.text
    counts = dict(re.findall(r'data-status="(\w+)">\w+ <b>(\d+)</b>', page.text))
    assert counts == {"succeeded": "2", "paused": "1", "failed": "1"}


def test_runs_list_filters_by_status_pipeline_time_and_id_prefix(served: Served) -> None:
    ids = served.ids

    def shown(query: str) -> set[str]:
        page = served.client.get(f"/runs?{query}")
        assert page.status_code == 200, page.text
        return set(re.findall(r'href="/runs/([0-9a-f]{32})"', page.text))

    assert shown("status=paused") == {ids["paused"]}
    assert shown("pipeline=branchy") == {ids["branch"]}
    assert shown(f"run_id={ids['failed'][:10].upper()}") == {ids["failed"]}
    assert shown("since=2000-01-01&until=2000-01-02") == set()
    assert shown("since=2000-01-01") == set(ids.values())
    bad = served.client.get("/runs?since=yesterday")
    assert bad.status_code == 400
    assert "since: &#39;yesterday&#39; is not a date" in bad.text


def test_runs_list_pages_by_position(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    from flujo_ui import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    first = served.client.get("/runs")
    found = re.findall(r'href="/runs/([0-9a-f]{32})"', first.text)
    assert len(found) == 2
    following = re.search(r'href="/runs\?(after=[^"]+)" rel="next"', first.text)
    assert following is not None
    second = served.client.get("/runs?" + following.group(1).replace("&amp;", "&"))
    rest = re.findall(r'href="/runs/([0-9a-f]{32})"', second.text)
    assert set(found) | set(rest) == set(served.ids.values())
    assert 'rel="next"' not in second.text


def _start_a_run(config: FlujoConfig) -> str:
    """A run a worker is executing right now (created and leased, no step finished yet)."""
    import time

    from flujo.plugin import RunRecord, Usage

    async def create() -> str:
        state = await open_state(config, create=False)
        try:
            now = time.time()
            run = RunRecord(
                run_id="f" * 32, pipeline_name="live", pipeline_version="v1",
                pipeline_ref=None, status=RunStatus.RUNNING, input="in", output=None,
                error=None, context={}, usage=Usage(), current_step=0, created_at=now,
                updated_at=now,
            )  # fmt: skip
            await state.create_run(run, owner="elsewhere", lease_s=60)
            return run.run_id
        finally:
            await state.close()

    return asyncio.run(create())


def test_pages_poll_only_while_a_run_is_running(served: Served) -> None:
    page = served.client.get("/runs")
    assert "hx-trigger" not in page.text  # nothing running: nothing to follow
    assert "hx-trigger" not in served.client.get(f"/runs/{served.ids['branch']}").text
    running = _start_a_run(served.config)
    page = served.client.get("/runs")
    assert 'hx-get="/runs/table?" hx-trigger="every 2s"' in page.text
    older = served.client.get("/runs?after=9999999999.0_0")
    assert "hx-trigger" not in older.text  # a later page stays put
    table = served.client.get("/runs/table")
    assert table.text.lstrip().startswith('<section id="runs-table"')
    assert f'href="/runs/{running}"' in table.text
    run_page = served.client.get(f"/runs/{running}")
    assert f'hx-get="/runs/{running}/body" hx-trigger="every 2s"' in run_page.text
    assert "No step has finished yet." in run_page.text


# ----------------------------------------------------------------------------- a run


def test_run_page_shows_the_branch_tree_and_plugin_sections(served: Served) -> None:
    page = served.client.get(f"/runs/{served.ids['branch']}")
    assert page.status_code == 200
    # The step tree by path: the branch's router and the route it took, under the branch.
    assert "route/@router" in page.text
    assert "route/billing/refund" in page.text
    assert 'class="st-succeeded depth-2"' in page.text
    assert "Checks" in page.text
    assert "(view-test)" in page.text
    assert "abc123" + served.ids["branch"][:8] in page.text  # the trace id, as stored
    assert served.plugin.calls.count(served.ids["branch"]) == 1


def test_refused_tool_call_shows_in_the_policy_decisions_section(served: Served) -> None:
    page = served.client.get(f"/runs/{served.ids['refused']}")
    assert page.status_code == 200
    assert "Policy decisions" in page.text
    rows = re.findall(r"<tr><td>agent</td><td>no_refunds</td>(.*?)</tr>", page.text)
    refused = [r for r in rows if "<td>tool_call</td><td>refund_money</td><td>deny</td>" in r]
    assert len(refused) == 1, rows
    assert "refunds of 500 need a person" in refused[0]
    assert "I could not refund; escalated" in page.text  # the step went on
    # A run without decisions has no such section: a plugin with nothing to say is absent.
    assert "Policy decisions" not in served.client.get(f"/runs/{served.ids['branch']}").text


def test_stored_strings_are_escaped_everywhere(served: Served) -> None:
    for key in ("branch", "failed"):
        page = served.client.get(f"/runs/{served.ids[key]}")
        assert "<script>document.title" not in page.text
        assert "<img src=x" not in page.text
        assert "&lt;script&gt;document.title=" in page.text
    listing = served.client.get("/runs")
    assert "<img src=x" not in listing.text
    assert "content-security-policy" in listing.headers
    assert "script-src 'self'" in listing.headers["content-security-policy"]


def test_bidi_and_control_characters_are_shown_escaped() -> None:
    from flujo_ui.views import pretty, visible

    assert visible("a\u202eb\x1b[2Jc\nd") == "a\\u202eb\\x1b[2Jc\nd"
    assert pretty({"k": "\u2066x"}) == '{\n  "k": "\\u2066x"\n}'


def test_trace_link_uses_the_configured_template(
    tmp_path: Path, state_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    toml = '[ui]\ntrace_url = "http://127.0.0.1:6006/trace/{trace_id}"\n'
    config = make_config(tmp_path, state_uri, ViewPlugin(), toml)
    ids = asyncio.run(populate(config, write_pipes(tmp_path)))
    with TestClient(create_app(config, token=TOKEN, port=8765), base_url=BASE) as client:
        page = client.get(f"/runs/{ids['branch']}")
    assert f'href="http://127.0.0.1:6006/trace/abc123{ids["branch"][:8]}"' in page.text


def test_a_run_page_without_any_plugin_and_with_a_failing_one(
    tmp_path: Path, state_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flujo.plugin import hookimpl

    class Broken:
        @hookimpl
        def flujo_run_view(self) -> None:
            raise RuntimeError("the section's database is gone <b>x</b>")

    monkeypatch.chdir(tmp_path)
    bare = make_config(tmp_path, state_uri)
    ids = asyncio.run(populate(bare, write_pipes(tmp_path)))
    with TestClient(create_app(bare, token=TOKEN, port=8765), base_url=BASE) as client:
        page = client.get(f"/runs/{ids['branch']}")
        assert page.status_code == 200
        assert 'class="plugin"' not in page.text  # no plugin, no section, no gap
    broken = make_config(tmp_path, state_uri, Broken())
    with TestClient(create_app(broken, token=TOKEN, port=8765), base_url=BASE) as client:
        page = client.get(f"/runs/{ids['branch']}")
        assert page.status_code == 200
        assert "route/billing/refund" in page.text
        assert "could not be shown: RuntimeError: the section&#39;s database is gone" in page.text
        assert "<b>x</b>" not in page.text


def test_a_huge_stored_value_is_cut_for_the_page() -> None:
    from flujo_ui.views import SHOWN_CHARS, pretty

    shown = pretty("x" * (SHOWN_CHARS + 5000))
    assert len(shown) < SHOWN_CHARS + 100
    assert shown.endswith("… 5,000 more characters (flujo runs show --json)")


def test_unknown_run_is_404(served: Served) -> None:
    assert served.client.get("/runs/" + "0" * 32).status_code == 404
    assert served.client.get("/runs/..%2f..%2fetc").status_code == 404


# ----------------------------------------------------------------------------- approvals


def test_reading_a_paused_run_never_imports_its_pipeline(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The answer form needs the step's schema, i.e. importing the file the run's stored
    # pipeline_ref names: never for a mere reader (no token), whatever the database says.
    import flujo.plugin

    loaded: list[str] = []
    real = flujo.plugin.load_target
    monkeypatch.setattr(flujo.plugin, "load_target", lambda ref: loaded.append(ref) or real(ref))
    page = served.client.get(f"/runs/{served.ids['paused']}")
    assert "waiting for a person at step &#39;approve&#39;" in page.text
    assert 'name="answer.amount"' not in page.text
    assert "open the link" in page.text
    served.client.get(f"/runs/{served.ids['paused']}/body")
    assert loaded == []
    _login(served.client)
    assert 'name="answer.amount"' in served.client.get(f"/runs/{served.ids['paused']}").text
    assert len(loaded) == 1


def test_paused_run_shows_the_question_and_a_form_from_the_schema(served: Served) -> None:
    _login(served.client)
    page = served.client.get(f"/runs/{served.ids['paused']}")
    assert "Refund this customer?" in page.text
    assert 'name="answer.amount"' in page.text
    assert 'type="number" step="1"' in page.text
    assert 'name="answer.note"' in page.text


def _form(served: Served, **extra: str) -> dict[str, str]:
    from flujo_ui.security import Guard

    return {"csrf": Guard(TOKEN, 8765).csrf, **extra}


def test_approve_stores_the_answer_and_the_run_finishes(served: Served) -> None:
    _login(served.client)
    run_id = served.ids["paused"]
    form = _form(served, **{"answer.amount": "40", "reason": "ok", "continue": "on"})
    answer = served.client.post(f"/runs/{run_id}/approve", data=form)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/runs/{run_id}"
    for _ in range(200):  # the server resumes the run in the background
        if _status(served.config, run_id) is RunStatus.SUCCEEDED:
            break
        served.client.get("/runs")  # lets the app's event loop run
    assert _status(served.config, run_id) is RunStatus.SUCCEEDED
    page = served.client.get(f"/runs/{run_id}")
    assert "paid 40" in page.text
    assert "approve@approval" in page.text


def test_approve_with_a_bad_answer_says_why_and_changes_nothing(served: Served) -> None:
    _login(served.client)
    run_id = served.ids["paused"]
    answer = served.client.post(
        f"/runs/{run_id}/approve", data=_form(served, **{"answer.amount": "lots"})
    )
    assert answer.status_code == 400
    assert "Amount: &#39;lots&#39; is not a whole number" in answer.text
    # The page never says what a link's query string tells it to.
    spoof = served.client.get(f"/runs/{run_id}?problem=visit+evil.example+to+log+in")
    assert "evil.example" not in spoof.text
    assert _status(served.config, run_id) is RunStatus.PAUSED


def test_reject_needs_a_reason_and_fails_the_run(served: Served) -> None:
    run_id = served.ids["paused"]
    # The token typed into the form instead of the login cookie.
    no_reason = served.client.post(f"/runs/{run_id}/reject", data=_form(served, token=TOKEN))
    assert no_reason.status_code == 400
    assert "rejecting needs a reason" in no_reason.text
    done = served.client.post(
        f"/runs/{run_id}/reject", data=_form(served, token=TOKEN, reason="not eligible")
    )
    assert done.status_code == 303
    assert _status(served.config, run_id) is RunStatus.FAILED


def _tool_paused(served: Served, expires_in_s: float | None = None) -> str:
    """A run paused on a tool call by a test policy (``refund_money``, amount 500)."""
    pipes = served.folder / "pipes.py"
    policy = AskForRefunds(expires_in_s)
    run_id = asyncio.run(run(served.config, pipes, "tooly", "refund 500", policy))
    assert _status(served.config, run_id) is RunStatus.PAUSED
    return run_id


def test_a_tool_call_pause_shows_the_call_without_importing_the_pipeline(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Everything shown is in the run's stored row: no pipeline import, even logged in.
    import flujo.plugin

    run_id = _tool_paused(served)
    loaded: list[str] = []
    real = flujo.plugin.load_target
    monkeypatch.setattr(flujo.plugin, "load_target", lambda ref: loaded.append(ref) or real(ref))
    for logged_in in (False, True):
        if logged_in:
            _login(served.client)
        page = served.client.get(f"/runs/{run_id}").text
        assert 'id="tool-approval"' in page
        assert '<td class="mono">refund_money</td>' in page
        assert "&#34;amount&#34;: 500" in page  # the arguments as stored
        assert "refunds of 500 need a person" in page
        assert "ask_for_refunds" in page
        assert "no expiry" in page
        assert "human step" not in page
        assert "schema" not in page
        assert 'name="answer_json"' not in page
        assert 'name="answer.' not in page
        assert 'id="approve-form"' in page
        assert 'id="reject-form"' in page
        assert XSS not in page
    assert loaded == []


def test_approving_a_tool_call_takes_no_answer(served: Served) -> None:
    _login(served.client)
    run_id = _tool_paused(served)
    # A JSON answer smuggled in is refused by the core, in one line; nothing changes.
    smuggled = served.client.post(
        f"/runs/{run_id}/approve", data=_form(served, answer_json='{"amount": 1}')
    )
    assert smuggled.status_code == 400
    assert "takes no --input" in smuggled.text
    assert _status(served.config, run_id) is RunStatus.PAUSED
    done = served.client.post(f"/runs/{run_id}/approve", data=_form(served, reason="fine"))
    assert done.status_code == 303
    assert _status(served.config, run_id) is RunStatus.INTERRUPTED
    page = served.client.get(f"/runs/{run_id}").text
    assert "agent@approval" in page
    assert "&#34;decision&#34;: &#34;approved&#34;" in page


def test_rejecting_a_tool_call_needs_a_reason_and_the_agent_goes_on(served: Served) -> None:
    _login(served.client)
    run_id = _tool_paused(served)
    no_reason = served.client.post(f"/runs/{run_id}/reject", data=_form(served))
    assert no_reason.status_code == 400
    assert "rejecting needs a reason" in no_reason.text
    done = served.client.post(f"/runs/{run_id}/reject", data=_form(served, reason="too much"))
    assert done.status_code == 303
    # A rejected tool call does not fail the run: the model is told, the agent resumes.
    assert _status(served.config, run_id) is RunStatus.INTERRUPTED
    assert "tool call rejected at step" in served.client.get(f"/runs/{run_id}").text


def test_an_expired_tool_call_pause_says_so_and_answering_it_fails_the_run(
    served: Served,
) -> None:
    _login(served.client)
    run_id = _tool_paused(served, expires_in_s=1e-9)  # expired by the time anyone answers
    page = served.client.get(f"/runs/{run_id}").text
    assert 'class="expired"' in page
    assert "expired at" in page
    answer = served.client.post(f"/runs/{run_id}/approve", data=_form(served, reason="late"))
    assert answer.status_code == 400
    assert "expired unanswered at" in answer.text
    assert "the run is now failed" in answer.text
    assert "Traceback" not in answer.text
    assert _status(served.config, run_id) is RunStatus.FAILED


# ----------------------------------------------------------------------------- security


def test_writes_need_the_token(served: Served) -> None:
    run_id = served.ids["paused"]
    form = _form(served, **{"answer.amount": "1"})
    assert served.client.post(f"/runs/{run_id}/approve", data=form).status_code == 403
    wrong = served.client.post(f"/runs/{run_id}/approve", data={**form, "token": "guess"})
    assert wrong.status_code == 403
    served.client.cookies.set(COOKIE, "guess")
    assert served.client.post(f"/runs/{run_id}/approve", data=form).status_code == 403
    assert served.client.get("/login?token=guess").status_code == 403
    assert _status(served.config, run_id) is RunStatus.PAUSED


def test_writes_need_the_csrf_value(served: Served) -> None:
    _login(served.client)
    run_id = served.ids["paused"]
    for csrf in (None, "", "0" * 64):
        data = {"answer.amount": "1", **({} if csrf is None else {"csrf": csrf})}
        assert served.client.post(f"/runs/{run_id}/approve", data=data).status_code == 403
    assert _status(served.config, run_id) is RunStatus.PAUSED


@pytest.mark.parametrize(
    "host", ["evil.example:8765", "evil.example", "127.0.0.1:9999", "127.0.0.1.nip.io:8765", ""]
)
def test_foreign_host_is_refused(served: Served, host: str) -> None:
    # DNS rebinding: the attacker's name resolves to 127.0.0.1, the Host header keeps it.
    answer = served.client.get("/runs", headers={"host": host})
    assert answer.status_code == 421
    assert served.ids["branch"] not in answer.text


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "[::1]:8765"])
def test_loopback_hosts_are_served(served: Served, host: str) -> None:
    assert served.client.get("/runs", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "https://127.0.0.1:8765"])
def test_cross_origin_write_is_refused(served: Served, origin: str) -> None:
    _login(served.client)
    run_id = served.ids["paused"]
    answer = served.client.post(
        f"/runs/{run_id}/approve",
        data=_form(served, **{"answer.amount": "1"}),
        headers={"origin": origin},
    )
    assert answer.status_code == 403
    assert _status(served.config, run_id) is RunStatus.PAUSED


def test_explicit_host_is_allowed_only_when_named() -> None:
    from flujo_ui.security import Guard

    loopback = Guard("t", 8765)
    assert not loopback.host_ok("192.168.1.5:8765")
    named = Guard("t", 8765, bind_host="192.168.1.5")
    assert named.host_ok("192.168.1.5:8765")
    assert named.host_ok("localhost:8765")
    assert not named.host_ok("evil.example:8765")


# ----------------------------------------------------------------------------- pipelines


def test_pipelines_page_and_series(served: Served) -> None:
    page = served.client.get("/pipelines")
    assert page.status_code == 200
    for name in ("branchy", "approval", "failing", "tooly"):
        assert f"/runs?pipeline={name}" in page.text
    series = served.client.get("/api/series?pipeline=branchy&days=3").json()
    assert series["daily"]["runs"][-1] == 1
    assert series["daily"]["success"][-1] == 1.0
    # Scores come from the run-view section's "score" column, named by title and evaluator.
    [(label, points)] = series["scores"].items()
    assert label == f"Checks {XSS}: judge"
    assert [value for _, value in points] == [0.75]


REFUNDS = """
from pathlib import Path

from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import FunctionModel

from flujo import Step, make_agent_async

def refund_money(amount: int) -> str:
    '''Send money back to the customer.'''
    (Path(__file__).parent / "paid.txt").write_text(str(amount))
    return f"refunded {amount}"

def answer(messages, info):
    # Like a real model, it reads the history (the server resumes with a fresh load): it
    # calls the tool, then says what the tool's result told it.
    parts = [p for m in messages for p in getattr(m, "parts", ())]
    told = [p.content for p in parts if isinstance(p, ToolReturnPart)]
    if told:
        return ModelResponse(parts=[TextPart(f"told: {told[-1]}")])
    return ModelResponse(parts=[ToolCallPart("refund_money", {"amount": 500}, tool_call_id="c1")])

def refunds() -> Step:
    return Step("agent", make_agent_async(FunctionModel(answer), "Help.", tools=[refund_money]))
"""


class RefundPolicies:
    """Registers ``ask_for_refunds``: the server's runner has it from ``[run] policies``, as
    a deployment would (not passed in code), so it resumes the run under the same policy."""

    @hookimpl
    def flujo_register_policies(self, register: Any) -> None:
        register("ask_for_refunds", lambda config: AskForRefunds())


@pytest.mark.parametrize("go_on", [True, False], ids=["continue", "stop"])
def test_rejecting_a_tool_call_can_continue_the_run_in_this_server(
    tmp_path: Path, state_uri: str, monkeypatch: pytest.MonkeyPatch, go_on: bool
) -> None:
    """As ``flujo runs reject`` then ``flujo runs resume`` (any worker): the run is interrupted,
    and resumed the model is told of the rejection and the step goes on; the tool never runs.
    The reject form of a tool call offers to continue here, as approving does."""
    monkeypatch.chdir(tmp_path)
    config = make_config(
        tmp_path, state_uri, RefundPolicies(), '[run]\npolicies = ["ask_for_refunds"]\n'
    )
    pipes = tmp_path / "refunds.py"
    pipes.write_text(REFUNDS)
    run_id = asyncio.run(run(config, pipes, "refunds", "refund 500"))
    assert _status(config, run_id) is RunStatus.PAUSED
    app = create_app(config, token=TOKEN, port=8765)
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        _login(client)
        page = client.get(f"/runs/{run_id}").text
        reject_form = page[page.index('id="reject-form"') :]
        assert 'name="continue" checked' in reject_form[: reject_form.index("</form>")]
        form = {"csrf": _form_csrf(), "reason": "too much"}
        if go_on:
            form["continue"] = "on"
        done = client.post(f"/runs/{run_id}/reject", data=form)
        assert done.status_code == 303
        for _ in range(200 if go_on else 0):  # the server resumes the run in the background
            if _status(config, run_id) is RunStatus.SUCCEEDED:
                break
            client.get("/runs")  # lets the app's event loop run
    record = _record(config, run_id)
    assert not (tmp_path / "paid.txt").exists()
    if go_on:
        assert record.status is RunStatus.SUCCEEDED, record.error
        assert record.output == "told: A person refused this tool call: too much"
    else:  # left for any worker, as after `flujo runs reject`
        assert record.status is RunStatus.INTERRUPTED
        assert record.error is not None
        assert record.error.startswith("tool call rejected at step 'agent'")


def test_a_human_steps_reject_form_offers_no_continue(served: Served) -> None:
    """Rejecting a human step fails the run: there is nothing to continue."""
    _login(served.client)
    page = served.client.get(f"/runs/{served.ids['paused']}").text
    reject_form = page[page.index('id="reject-form"') :]
    assert 'name="continue"' not in reject_form[: reject_form.index("</form>")]


def _form_csrf() -> str:
    from flujo_ui.security import Guard

    return Guard(TOKEN, 8765).csrf
