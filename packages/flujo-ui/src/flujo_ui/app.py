"""The web app: Starlette routes rendering Jinja2 templates (autoescaped), htmx for updates.

Reads go through the state backend opened read-only (``open_state(read_only=True)``: the
app can never write the database) and the run-view hook (``plugin_sections``, what
``flujo runs show`` prints). The only writes are approve/reject, through the runner
(``Flujo.approve_async``/``reject_async``, what ``flujo runs approve/reject`` call).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flujo import FlujoError
from flujo.plugin import RunStatus, UserError, plugin_sections
from flujo_ui import views
from flujo_ui.security import COOKIE, Guard, GuardMiddleware
from flujo_ui.settings import SECTION, UiSettings

if TYPE_CHECKING:
    from flujo.plugin import FlujoConfig, RunRecord, StateBackend

LIVE_EVERY_S = 2
"""How often a page showing a running run asks for fresh rows (htmx polling)."""
PIPELINE_SAMPLE = 1000
"""Runs per pipeline read for durations (the newest in the window)."""
SCORE_SAMPLE = 50
"""Finished runs per pipeline whose run view is read for evaluation scores."""


@dataclass
class UiState:
    config: FlujoConfig
    guard: Guard
    env: Environment
    settings: UiSettings
    state: StateBackend | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


def _environment(guard: Guard) -> Environment:
    env = Environment(
        loader=PackageLoader("flujo_ui", "templates"),
        # Every stored string is data: escaped in every template, whatever its extension.
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pretty=views.pretty,
        visible=views.visible,
        when=views.when,
        seconds=views.seconds,
        usage=views.usage_text,
    )
    env.globals["csrf"] = guard.csrf
    env.globals["statuses"] = [s.value for s in RunStatus]
    return env


def create_app(
    config: FlujoConfig, *, token: str, port: int, bind_host: str = "127.0.0.1"
) -> Starlette:
    """The app over ``config``'s state. ``token`` guards approve/reject; ``port`` and
    ``bind_host`` are what the ``Host`` header must name (see :mod:`flujo_ui.security`)."""
    from flujo.plugin import open_state

    guard = Guard(token=token, port=port, bind_host=bind_host)
    ui = UiState(config, guard, _environment(guard), config.section(SECTION, UiSettings))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ui.state = await open_state(config, create=False, read_only=True)
        try:
            yield
        finally:
            for task in list(ui.tasks):
                task.cancel()
            await asyncio.gather(*ui.tasks, return_exceptions=True)
            await ui.state.close()

    from importlib.resources import files

    static = StaticFiles(directory=str(files("flujo_ui") / "static"))
    routes = [
        Route("/", lambda r: RedirectResponse("/runs", 302)),
        Route("/login", _handler(ui, login)),
        Route("/runs", _handler(ui, runs_page)),
        Route("/runs/table", _handler(ui, runs_table)),
        Route("/runs/{run_id}", _handler(ui, run_page)),
        Route("/runs/{run_id}/body", _handler(ui, run_body)),
        Route("/runs/{run_id}/approve", _handler(ui, approve), methods=["POST"]),
        Route("/runs/{run_id}/reject", _handler(ui, reject), methods=["POST"]),
        Route("/pipelines", _handler(ui, pipelines_page)),
        Route("/api/series", _handler(ui, pipeline_series)),
        Mount("/static", static, name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(GuardMiddleware, guard=guard)
    return app


def _handler(ui: UiState, fn: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        return await fn(ui, request)  # type: ignore[no-any-return]

    return endpoint


def _page(ui: UiState, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = ui.env.get_template(name).render(**values)
    return HTMLResponse(html, status_code=status)


def _authenticated(ui: UiState, request: Request) -> bool:
    return ui.guard.token_ok(request.cookies.get(COOKIE))


def _state(ui: UiState) -> StateBackend:
    assert ui.state is not None, "the app's state is opened by its lifespan"
    return ui.state


# ----------------------------------------------------------------------------- login


async def login(ui: UiState, request: Request) -> Response:
    """The link printed at start: sets the token cookie, then drops the token from the URL."""
    if not ui.guard.token_ok(request.query_params.get("token")):
        return _page(ui, "message.html", 403, title="Wrong token", text="This link's token is "
                     "not the one `flujo ui` printed when it started.")  # fmt: skip
    response = RedirectResponse("/runs", 303)
    response.set_cookie(COOKIE, ui.guard.token, httponly=True, samesite="strict", path="/")
    return response


# ----------------------------------------------------------------------------- runs


async def _runs(ui: UiState, request: Request) -> tuple[dict[str, Any], int]:
    filters = views.Filters.parse(request.query_params)
    values: dict[str, Any] = {"filters": filters, "runs": [], "counts": {}, "error": None}
    try:
        status = filters.status_value()
        since, until = filters.window()
        after = filters.cursor()
    except views.FilterError as exc:
        values["error"] = str(exc)
        return values, 400
    state = _state(ui)
    pipeline, prefix = filters.pipeline or None, filters.id_prefix()
    runs = await state.list_runs(
        status=status,
        limit=views.PAGE_SIZE + 1,
        after=after,
        pipeline=pipeline,
        created_after=since,
        created_before=until,
        id_prefix=prefix,
    )
    # Counts by status under the other filters: each status chip says what it would show.
    counted = await state.count_runs(
        pipeline=pipeline, created_after=since, created_before=until, id_prefix=prefix
    )
    counts = {s.value: n for (_, s), n in counted.items()}
    more = len(runs) > views.PAGE_SIZE
    runs = runs[: views.PAGE_SIZE]
    values.update(
        runs=runs,
        counts=counts,
        total=sum(counts.values()),
        next_query=filters.query(after=views.cursor_of(runs[-1])) if more else None,
        first_query=filters.query(after="") if after else None,
        # The first page follows new and running runs; a later page stays where it is.
        live=after is None and counts.get("running", 0) + counts.get("interrupted", 0) > 0,
        live_every=LIVE_EVERY_S,
        table_query=filters.query(),
    )
    return values, 200


async def runs_page(ui: UiState, request: Request) -> Response:
    values, status = await _runs(ui, request)
    return _page(ui, "runs.html", status, **values)


async def runs_table(ui: UiState, request: Request) -> Response:
    values, status = await _runs(ui, request)
    return _page(ui, "runs_table.html", status, **values)


# ----------------------------------------------------------------------------- a run


async def _run_values(ui: UiState, run_id: str, *, trusted: bool) -> dict[str, Any] | None:
    state = _state(ui)
    run = await state.get_run(run_id) if run_id.isalnum() else None
    if run is None:
        return None
    sections = await plugin_sections(run, state, ui.config)
    trace = views.trace_id(sections)
    trace_url = None
    if trace and ui.settings.trace_url:
        from urllib.parse import quote

        trace_url = ui.settings.trace_url.replace("{trace_id}", quote(trace, safe=""))
    return {
        "run": run,
        "rows": views.timeline(run),
        "sections": sections,
        "trace_id": trace,
        "trace_url": trace_url,
        "paused": _paused(run, trusted) if run.status is RunStatus.PAUSED else None,
        "live": run.status in (RunStatus.RUNNING, RunStatus.INTERRUPTED),
        "live_every": LIVE_EVERY_S,
        "duration": max(run.updated_at - run.created_at, 0.0),
        "context": _context_fields(run.context),
    }


def _context_fields(context: Mapping[str, Any]) -> dict[str, Any]:
    # The keys of flagged fields (fingerprints) stay out of people's view, as in runs show.
    return {k: v for k, v in context.items() if not k.startswith("__flujo")}


def _paused(run: RunRecord, trusted: bool) -> views.Paused | None:
    """Where ``run`` waits and its answer form. The form comes from the human step's schema,
    which means importing the pipeline the run records (``pipeline_ref``, as ``flujo runs
    approve`` does): only for a ``trusted`` request (one holding the token), so merely
    reading a page never runs code a stored string names."""
    found = views.paused_path(run)
    if found is None:
        return None
    path, question = found
    paused = views.Paused(path, question)
    views.describe_pause(paused, views.paused_record(run, path))
    if paused.tool_calls is not None:
        # All a tool-call approval shows is in the stored row: no pipeline import, no form.
        return paused
    if not trusted:
        paused.locked = True
        return paused
    if not run.pipeline_ref:
        paused.problem = "the run does not record where its pipeline is defined"
        return paused
    try:
        step = _human_step(run.pipeline_ref, path)
    except Exception as exc:  # noqa: BLE001 - the user's pipeline may fail to import: say why
        paused.problem = views.visible(f"{type(exc).__name__}: {exc}")[:500]
        return paused
    paused.prompt = str(getattr(step, "prompt", "") or "")
    schema = getattr(step, "schema", None)
    if schema is None:
        paused.plain = True
        return paused
    from pydantic import TypeAdapter

    json_schema = TypeAdapter(schema).json_schema()
    paused.fields = views.form_fields(json_schema)
    paused.schema_text = json.dumps(json_schema, indent=2)
    return paused


def _human_step(ref: str, path: str) -> Any:
    from flujo.plugin import load_target

    name = path.rsplit("/", 1)[-1]
    for step in load_target(ref).walk():
        if step.name == name and hasattr(step, "schema"):
            return step
    raise UserError(f"the pipeline has no human step named {name!r}")


async def run_page(ui: UiState, request: Request) -> Response:
    authenticated = _authenticated(ui, request)
    values = await _run_values(ui, request.path_params["run_id"], trusted=authenticated)
    if values is None:
        return _page(ui, "message.html", 404, title="No such run",
                     text="No run with this id is stored.")  # fmt: skip
    return _page(ui, "run.html", authenticated=authenticated, problem=None, **values)


async def run_body(ui: UiState, request: Request) -> Response:
    authenticated = _authenticated(ui, request)
    values = await _run_values(ui, request.path_params["run_id"], trusted=authenticated)
    if values is None:
        return Response("no such run", 404)
    return _page(ui, "run_body.html", authenticated=authenticated, problem=None, **values)


async def _answer(ui: UiState, request: Request, approve: bool) -> Response:
    run_id = request.path_params["run_id"]
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    if not ui.guard.csrf_ok(values.get("csrf")):
        why = "The form's CSRF value is missing or wrong: reload the page."
        return _page(ui, "message.html", 403, title="Refused", text=why)
    if not (_authenticated(ui, request) or ui.guard.token_ok(values.get("token"))):
        return _page(ui, "message.html", 403, title="Refused",
                     text="Approving and rejecting need the token `flujo ui` printed when it "
                     "started (open its link, or type it into the form).")  # fmt: skip
    state = _state(ui)
    run = await state.get_run(run_id) if run_id.isalnum() else None
    if run is None:
        return _page(ui, "message.html", 404, title="No such run",
                     text="No run with this id is stored.")  # fmt: skip
    reason = values.get("reason", "").strip() or None
    try:
        answer: Any = None
        if approve:
            answer = _form_answer(run, values)
        elif reason is None:
            raise UserError("rejecting needs a reason")
        await _apply(ui, run, approve, answer, reason, values.get("continue") == "on")
    except (UserError, ValueError) as exc:
        return await _problem(ui, request, run_id, str(exc))
    except FlujoError as exc:  # the answer fails the schema, the run changed meanwhile...
        return await _problem(ui, request, run_id, str(exc))
    return RedirectResponse(f"/runs/{run_id}", 303)


async def _problem(ui: UiState, request: Request, run_id: str, text: str) -> Response:
    """The run's page again, saying why the answer was not taken (never a message carried in
    the URL: a link cannot make this page say something the server did not)."""
    values = await _run_values(ui, run_id, trusted=True)  # the token was checked
    if values is None:
        return _page(ui, "message.html", 404, title="No such run", text=text)
    authenticated = _authenticated(ui, request)
    return _page(ui, "run.html", 400, authenticated=authenticated, problem=text[:1000], **values)


def _form_answer(run: RunRecord, values: Mapping[str, str]) -> Any:
    if "answer_json" in values:  # sent as is: the core refuses one for a tool call
        text = values["answer_json"].strip()
        if not text:
            return None
        try:
            return json.loads(text, parse_constant=_no_constant)
        except ValueError as exc:
            raise ValueError(f"the answer is not JSON: {exc}") from None
        except RecursionError:  # deeper than the parser goes: too deep to store anyway
            raise ValueError("the answer is JSON nested too deeply") from None
    paused = _paused(run, trusted=True)  # the token was checked
    if paused is None or paused.fields is None:
        return None
    return views.parse_answer(paused.fields, values)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


async def _apply(
    ui: UiState, run: RunRecord, approve: bool, answer: Any, reason: str | None, go_on: bool
) -> None:
    """``flujo runs approve/reject``'s operation: the runner of the run's pipeline answers."""
    from flujo import Flujo
    from flujo.plugin import load_target

    if not run.pipeline_ref:
        raise UserError(f"run {run.run_id} does not record where its pipeline is defined")
    pipeline = load_target(run.pipeline_ref)
    runner: Flujo[Any] = Flujo(pipeline, config=ui.config, pipeline_ref=run.pipeline_ref)
    try:
        if approve:
            answered = await runner.approve_async(run.run_id, answer, reason=reason)
        else:
            answered = await runner.reject_async(run.run_id, reason=reason or "")
    except BaseException:
        await runner.aclose()
        raise
    # Approved, or a tool call rejected (the model is told and the step goes on), the run is
    # `interrupted`, for any worker, as after `flujo runs approve/reject`; a rejected human
    # step failed it: nothing to continue.
    if not (go_on and (approve or answered.status is RunStatus.INTERRUPTED)):
        await runner.aclose()
        return

    async def resume() -> None:
        # Asked to, this server is the worker that continues it.
        try:
            await runner.resume_async(run.run_id)
        except Exception:  # noqa: BLE001 - the run records its own failure; a lost
            pass  # race (another worker took it) leaves it to that worker
        finally:
            await runner.aclose()

    task = asyncio.create_task(resume())
    ui.tasks.add(task)
    task.add_done_callback(ui.tasks.discard)


async def approve(ui: UiState, request: Request) -> Response:
    return await _answer(ui, request, True)


async def reject(ui: UiState, request: Request) -> Response:
    return await _answer(ui, request, False)


# ----------------------------------------------------------------------------- pipelines


def _days(request: Request) -> int:
    try:
        days = int(request.query_params.get("days", "14"))
    except ValueError:
        days = 14
    return min(max(days, 1), 366)


async def pipelines_page(ui: UiState, request: Request) -> Response:
    state = _state(ui)
    days = _days(request)
    since = _day_start(time.time()) - (days - 1) * 86400
    counted = await state.count_runs(created_after=since, by_pipeline=True)
    names = sorted({name for name, _ in counted if name is not None})
    stats = []
    for name in names:
        by_status = {s.value: n for (p, s), n in counted.items() if p == name}
        recent = await state.list_runs(pipeline=name, created_after=since, limit=PIPELINE_SAMPLE)
        spans = views.durations(recent)
        stats.append(
            views.PipelineStats(
                name=name,
                runs=sum(by_status.values()),
                by_status=by_status,
                finished=sum(by_status.get(s.value, 0) for s in views.FINISHED),
                succeeded=by_status.get("succeeded", 0),
                p50_s=views.percentile(spans, 0.5),
                p95_s=views.percentile(spans, 0.95),
                sampled=len(spans),
            )
        )
    return _page(ui, "pipelines.html", stats=stats, days=days, sample=PIPELINE_SAMPLE)


def _day_start(ts: float) -> float:
    return math.floor(ts / 86400) * 86400


async def pipeline_series(ui: UiState, request: Request) -> Response:
    """Per day: runs, success rate, p50/p95 duration; evaluation scores per finished run."""
    state = _state(ui)
    name = request.query_params.get("pipeline", "")
    days = _days(request)
    start = _day_start(time.time()) - (days - 1) * 86400
    runs = await state.list_runs(pipeline=name, created_after=start, limit=PIPELINE_SAMPLE)
    series = views.daily_series(runs, start, days)
    scores: dict[str, list[list[float]]] = {}
    finished = [r for r in runs if r.status in views.FINISHED][:SCORE_SAMPLE]
    for run in reversed(finished):  # oldest first
        full = await state.get_run(run.run_id)
        if full is None:
            continue
        for label, values in views.scores_of(await plugin_sections(full, state, ui.config)).items():
            for value in values:
                scores.setdefault(label, []).append([run.created_at, value])
    return JSONResponse({"pipeline": name, "days": days, "daily": series, "scores": scores})
