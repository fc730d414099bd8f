"""The web app under attack, over real runs (SQLite and PostgreSQL, Starlette's TestClient):
hostile text in every stored or code-defined string a page renders (pipeline and step names,
a human step's prompt and its schema's titles, descriptions and enum values that drive the
form), answers that are huge or nested past any parser, path traversal in static files,
every write route without its token/CSRF/Origin.

The XSS payloads are from the OWASP XSS Filter Evasion Cheat Sheet
(https://cheatsheetseries.owasp.org/cheatsheets/XSS_Filter_Evasion_Cheat_Sheet.html): script
tags in odd case and with a ``/`` for a space, ``javascript:`` URLs, event handlers on
``img``/``svg``/``body``, attribute break-outs (``">``), a closing ``</script>``, and htmx
attributes (``hx-get`` with ``hx-trigger=load``), which would run in this app if any stored
text became markup. The pages are parsed as HTML and every tag and attribute checked.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from ui_testkit import make_config, run

from flujo.plugin import FlujoConfig, RunStatus, open_state
from flujo_ui.app import create_app
from flujo_ui.security import COOKIE, Guard

TOKEN = "test-token-0123456789"
BASE = "http://127.0.0.1:8765"

PAYLOADS = [
    "<ScRiPt>document.title='pwned'</sCrIpT>",
    '<SCRIPT/XSS SRC="http://xss.rocks/xss.js"></SCRIPT>',
    '<IMG SRC="javascript:alert(1);">',
    "<svg/onload=alert(1)>",
    "<BODY ONLOAD=alert(1)>",
    '"><img src=x onerror=alert(1)>',
    "'><iframe src=javascript:alert(1)>",
    "</script><script>alert(1)</script>",
    '<div hx-get="/runs" hx-trigger="load" hx-target="body">x</div>',
    "javascript:alert(1)",
    "{{ 7*7 }}{% raw %}",
]
XSS = " ".join(PAYLOADS)

PIPES = """
from typing import Literal
from pydantic import BaseModel, Field
from flujo import Pipeline, Step

XSS = {xss!r}
NAME = XSS.replace("/", " ")  # step names may not hold "/" (it separates a step's path)


class Answer(BaseModel):
    model_config = {{"title": XSS}}
    choice: Literal[{choices}] = Field(title="choice " + XSS, description="pick " + XSS)
    note: str = Field("", title=XSS, description=XSS)


def ask(text: str) -> str:
    return text


hostile = Pipeline(
    [
        Step.from_callable(ask, name="ask " + NAME),
        Step.human("human " + NAME, schema=Answer, prompt="Really? " + XSS),
    ],
    name="pipe " + XSS,
)
plain = Pipeline([Step.from_callable(ask, name="ask"), Step.human("check")], name="plain")
"""


@dataclass
class Served:
    client: TestClient
    config: FlujoConfig
    paused: str
    plain: str


@pytest.fixture
def served(tmp_path: Path, state_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.chdir(tmp_path)
    config = make_config(tmp_path, state_uri)
    pipes = tmp_path / "hostile_pipes.py"
    choices = ", ".join(repr(p) for p in PAYLOADS)
    pipes.write_text(PIPES.format(xss=XSS, choices=choices))

    async def populate() -> tuple[str, str]:
        paused = await run(config, pipes, "hostile", "hello " + XSS)
        plain = await run(config, pipes, "plain", "hello")
        return paused, plain

    paused, plain = asyncio.run(populate())
    app = create_app(config, token=TOKEN, port=8765)
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        yield Served(client, config, paused, plain)


class _Markup(HTMLParser):
    """Every tag and attribute of a page, and the text of its scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.script_text.append(data)


def _template_tags() -> set[str]:
    """The tags the app's own templates write: any other tag on a page came from data."""
    from importlib.resources import files

    folder = files("flujo_ui") / "templates"
    found = {"html", "head", "body"}
    for template in folder.iterdir():
        if template.name.endswith(".html"):
            found |= {
                t.lower() for t in re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", template.read_text())
            }
    return found


ALLOWED_TAGS = _template_tags()


def _check_markup(page: str, where: str) -> None:
    found = _Markup()
    found.feed(page)
    assert found.script_text == [], f"{where}: inline script {found.script_text[:1]}"
    for tag, attrs in found.tags:
        assert tag in ALLOWED_TAGS, f"{where}: a <{tag}> tag from stored text"
        for name, value in attrs:
            assert not name.startswith("on"), f"{where}: <{tag} {name}=...>"
            assert name not in ("xss", "srcdoc"), f"{where}: <{tag} {name}>"
            if tag == "script" and name != "defer":
                assert name == "src", (where, attrs)
                assert (value or "").startswith("/static/"), (where, attrs)
            if tag in ("svg", "rect"):
                assert name in ("class", "viewbox", "preserveaspectratio", "aria-hidden", "x",
                                "y", "width", "height"), (where, tag, name)  # fmt: skip
            if name.startswith("hx-"):
                assert "pwned" not in (value or ""), (where, tag, attrs)
                assert value != "body", (where, tag, attrs)
            if name in ("href", "src", "action", "hx-get", "data-series"):
                lowered = (value or "").strip().lower()
                if (tag, value) == ("link", "data:,"):  # the template's own empty icon
                    continue
                assert not lowered.startswith(("javascript:", "data:", "//")), (where, attrs)


def _login(client: TestClient) -> None:
    assert client.get(f"/login?token={TOKEN}").status_code == 303


def test_hostile_names_schema_and_prompt_never_become_markup(served: Served) -> None:
    client = served.client
    pages = {
        "runs": "/runs",
        "runs filtered": "/runs?" + "pipeline=" + XSS.replace(" ", "+")[:200],
        "table": "/runs/table",
        "pipelines": "/pipelines",
        "run (anonymous)": f"/runs/{served.paused}",
        "run body": f"/runs/{served.paused}/body",
    }
    for where, url in pages.items():
        answer = client.get(url)
        assert answer.status_code in (200, 400), (where, answer.status_code)
        _check_markup(answer.text, where)
    _login(client)
    page = client.get(f"/runs/{served.paused}")
    assert page.status_code == 200
    assert "answer.choice" in page.text  # the form the schema drives is there
    _check_markup(page.text, "run (logged in, with the form)")
    assert "{{ 7*7 }}" in page.text or "{{ 7*7 }}" in page.text.replace("&#39;", "'")
    assert ">49<" not in page.text
    series = client.get("/api/series", params={"pipeline": "pipe " + XSS})
    assert series.headers["content-type"].startswith("application/json")
    assert series.json()["pipeline"] == "pipe " + XSS


def test_an_enum_answer_from_the_form_is_taken_as_text(served: Served) -> None:
    _login(served.client)
    csrf = Guard(TOKEN, 8765).csrf
    answer = served.client.post(
        f"/runs/{served.paused}/approve",
        data={"csrf": csrf, "answer.choice": PAYLOADS[7], "answer.note": XSS},
    )
    assert answer.status_code == 303, answer.text[:500]
    page = served.client.get(f"/runs/{served.paused}")
    _check_markup(page.text, "run after the answer")


def _status(config: FlujoConfig, run_id: str) -> RunStatus:
    async def read() -> RunStatus:
        state = await open_state(config, create=False, read_only=True)
        try:
            found = await state.get_run(run_id)
            assert found is not None
            return found.status
        finally:
            await state.close()

    return asyncio.run(read())


@pytest.mark.parametrize("depth", [600, 100_000], ids=["past storage", "past the parser"])
def test_an_answer_nested_too_deep_is_refused_and_the_run_stays_paused(
    served: Served, depth: int
) -> None:
    _login(served.client)
    csrf = Guard(TOKEN, 8765).csrf
    deep = "[" * depth + "]" * depth
    answer = served.client.post(
        f"/runs/{served.plain}/approve", data={"csrf": csrf, "answer_json": deep}
    )
    assert answer.status_code == 400, answer.text[:300]
    assert "nested" in answer.text
    assert _status(served.config, served.plain) is RunStatus.PAUSED
    ok = served.client.post(
        f"/runs/{served.plain}/approve", data={"csrf": csrf, "answer_json": '{"a": 1}'}
    )
    assert ok.status_code == 303


def test_a_huge_write_is_refused_before_it_is_read(served: Served) -> None:
    """Anyone who can reach the port can post; the body is read before the token is
    checked, so its size is bounded first (no token, no CSRF value here): by its
    Content-Length, or as it arrives when sent in chunks without one. Each field under
    Starlette's own 1 MiB limit per field, many of them."""
    from flujo_ui.security import MAX_WRITE_BYTES

    fields = {f"f{i}": "x" * (900 * 1024) for i in range(4)}
    answer = served.client.post(f"/runs/{served.plain}/approve", data=fields)
    assert answer.status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_WRITE_BYTES // 65536 + 2):
            yield b"f=" + b"x" * 65534

    chunked = served.client.post(
        f"/runs/{served.plain}/approve",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert chunked.status_code == 413
    for length in ("-1", "1e9", "99999999999999999999"):
        odd = served.client.post(
            f"/runs/{served.plain}/approve", content=b"f=1", headers={"content-length": length}
        )
        assert odd.status_code in (400, 413)
    assert _status(served.config, served.plain) is RunStatus.PAUSED


WRITES = [("POST", "/runs/{run}/approve"), ("POST", "/runs/{run}/reject")]


@pytest.mark.parametrize(("method", "route"), WRITES)
def test_every_write_route_needs_token_csrf_and_origin(
    served: Served, method: str, route: str
) -> None:
    """The app's write routes are exactly these (enumerated from its routing table), and
    each refuses a request missing any one of its guards."""
    from starlette.routing import Route

    app = served.client.app
    writes = sorted(
        (m, r.path)
        for r in app.routes  # type: ignore[attr-defined]
        if isinstance(r, Route)
        for m in (r.methods or set()) - {"GET", "HEAD"}
    )
    assert writes == sorted((m, r.replace("{run}", "{run_id}")) for m, r in WRITES)
    url = route.format(run=served.plain)
    csrf = Guard(TOKEN, 8765).csrf
    full = {"csrf": csrf, "token": TOKEN, "reason": "r"}
    assert served.client.request(method, url, data={**full, "csrf": ""}).status_code == 403
    assert served.client.request(method, url, data={**full, "token": ""}).status_code == 403
    foreign = served.client.request(
        method, url, data=full, headers={"origin": "http://127.0.0.1.evil.example:8765"}
    )
    assert foreign.status_code == 403
    served.client.cookies.set(COOKIE, TOKEN[:-1])
    assert served.client.request(method, url, data={**full, "token": ""}).status_code == 403
    assert _status(served.config, served.plain) is RunStatus.PAUSED


@pytest.mark.parametrize(
    "path",
    [
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e%2f%2e%2e%2fflujo.toml",
        "/static//etc/passwd",
        "/static/..\\app.py",
        "/static/%252e%252e/app.py",
    ],
)
def test_static_files_do_not_leave_their_folder(served: Served, path: str) -> None:
    answer = served.client.get(path)
    assert answer.status_code in (404, 400), (path, answer.status_code)
    assert "def create_app" not in answer.text
    assert "[state]" not in answer.text


@pytest.mark.parametrize(
    "run_id", ["..%2f..%2fetc", "x' OR '1'='1", "%25", "_", "%0d%0aSet-Cookie:%20a=b"]
)
def test_hostile_run_ids_are_not_found(served: Served, run_id: str) -> None:
    page = served.client.get(f"/runs/{run_id}")
    assert page.status_code == 404
    assert "set-cookie" not in page.headers or "a=b" not in page.headers["set-cookie"]
    _login(served.client)
    csrf = Guard(TOKEN, 8765).csrf
    answer = served.client.post(f"/runs/{run_id}/reject", data={"csrf": csrf, "reason": "r"})
    assert answer.status_code == 404


def test_redirects_stay_on_this_server(served: Served) -> None:
    for url in ("/", "/login?token=" + TOKEN + "&next=//evil.example", "/runs/abc/approve"):
        answer = served.client.request("POST" if "approve" in url else "GET", url)
        location = answer.headers.get("location", "/")
        assert location.startswith("/"), (url, location)
        assert not location.startswith("//"), (url, location)


def test_series_of_a_hostile_pipeline_name_is_json_not_markup(served: Served) -> None:
    answer = served.client.get("/api/series", params={"pipeline": "</script>" + XSS})
    assert answer.status_code == 200
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert json.loads(answer.text)["pipeline"].startswith("</script>")
