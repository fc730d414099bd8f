"""``flujo run`` and ``flujo runs list/show/resume``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from flujo.cli._app import CliState, dump_json, echo_json
from flujo.cli._signals import Interrupts, resume_hint
from flujo.domain.errors import (
    FlujoError,
    InputValidationError,
    LeaseLostError,
    RunFinishedError,
    RunLeasedError,
    RunNotFoundError,
    TargetError,
)

if TYPE_CHECKING:
    from flujo.cli._progress import Progress
    from flujo.domain.interfaces import StateBackend
    from flujo.domain.models import PipelineResult, RunRecord


def _utf8(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputValidationError(
            f"{where}: not UTF-8 text (byte {raw[exc.start]:#x} at offset {exc.start})"
        ) from None


def _argument_text(value: str, where: str) -> str:
    # Arguments that are not UTF-8 reach Python as lone surrogates (surrogateescape).
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _utf8(os.fsencode(value), where)
    return value


def _read_input(value: str) -> str:
    if value == "-":
        return _utf8(sys.stdin.buffer.read(), "--input - (stdin)")
    if value.startswith("@"):
        path = value[1:]
        shown = ascii(path)[1:-1]
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise InputValidationError(f"--input @{shown}: cannot read: {exc.strerror}") from None
        return _utf8(raw, f"--input @{shown}")
    return _argument_text(value, "--input")


def _parse_context(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    import json

    from flujo.domain.errors import UnstorableValueError
    from flujo.state._rows import dumps

    try:
        value = json.loads(_argument_text(text, "--context"))
    except ValueError as exc:
        raise InputValidationError(f"--context: not valid JSON: {exc}") from None
    except RecursionError:  # deeper than the parser goes: too deep to store anyway
        raise InputValidationError("--context: JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise InputValidationError("--context: expected a JSON object")
    try:
        dumps(value)  # JSON escapes can spell what cannot be stored: "\\udce9", NaN
    except UnstorableValueError as exc:
        raise InputValidationError(f"--context: cannot be stored: {exc}") from None
    return value


def _report(result: PipelineResult, as_json: bool, interrupted_code: int = 130) -> int:
    """Print ``result`` as stored; return the exit code (``interrupted_code`` if interrupted)."""
    from flujo.domain.models import RunStatus

    if as_json:
        echo_json(result.to_dict())
    if result.status is RunStatus.INTERRUPTED:
        click.echo(resume_hint(result.run_id, result.error), err=True)
        return interrupted_code
    if not as_json:
        if result.succeeded:
            out = result.output
            click.echo(out if isinstance(out, str) else dump_json(out))
        else:
            click.echo(f"run {result.run_id} {result.status.value}: {result.error}", err=True)
        click.echo(f"run {result.run_id}: {result.status.value}", err=True)
    return 0 if result.succeeded else 1


_QUIET = click.option("--quiet", "-q", is_flag=True, help="Do not show step progress on stderr.")


def _progress(state: CliState, quiet: bool) -> Progress | None:
    """Step progress on stderr, observing the runs of this command (``None`` with --quiet):
    redrawn in place on a terminal, one plain line per step start and end otherwise."""
    if quiet:
        return None
    from flujo.cli._progress import Progress

    live = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    progress = Progress(sys.stderr, live=live)
    progress.attach(state.plugins)
    return progress


@click.command("run")
@click.argument("target")
@click.option(
    "--input", "input_", required=True, help="Input of the first step: text, @file, or - for stdin."
)
@click.option("--context", "context_json", default=None, help="Initial context as a JSON object.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.option(
    "--engine",
    "engine_name",
    default=None,
    help="The registered engine that executes the run (default: [engine] kind, else local).",
)
@_QUIET
@click.pass_obj
def run(
    state: CliState,
    target: str,
    input_: str,
    context_json: str | None,
    as_json: bool,
    quiet: bool,
    engine_name: str | None,
) -> None:
    """Run the pipeline TARGET (path/to/file.py:name or module:name).

    Each step's progress is shown on stderr (live on a terminal); stdout is the result.
    """
    from flujo.application.engines import create_engine
    from flujo.application.runner import Flujo
    from flujo.application.targets import load_target

    with Interrupts(lambda r: _report(r, as_json, stop.exit_code)) as stop:
        config = state.config()
        what = "--engine" if engine_name is not None else ""
        create_engine(config, state.plugins, engine_name, what=what)  # unknown: one line, now
        pipeline = load_target(target)
        data = _read_input(input_)
        context = _parse_context(context_json)
        if stop.signum is not None:
            click.echo("interrupted before the run started; nothing was stored", err=True)
            sys.exit(stop.exit_code)
        runner: Flujo[Any] = Flujo(
            pipeline, config=config, pipeline_ref=_absolute_ref(target), engine=engine_name
        )
        stop.attach(runner)
        progress = _progress(state, quiet)
        try:
            if progress is not None:
                progress.expect(len(runner.pipeline.steps))
            with runner:
                stop.result = runner.run(data, context=context)
        finally:
            if progress is not None:
                progress.close()  # its lines come before the result's
        code = _report(stop.result, as_json, stop.exit_code)
    sys.exit(code)


def _absolute_ref(target: str) -> str:
    # A file target is stored absolute so `flujo runs resume` works from any folder.
    where, _, attr = target.rpartition(":")
    if where.endswith(".py") or "/" in where:
        from pathlib import Path

        return f"{Path(where).resolve()}:{attr}"
    return target


@click.group("runs")
def runs() -> None:
    """Inspect and resume stored runs."""


async def _with_state(state: CliState, fn: Any, *, read_only: bool = False) -> Any:
    from flujo.state import open_state

    # Nothing here creates a database: listing or resuming runs where none were ever stored
    # is "no state database at ..." (a wrong folder or URI), not an empty one made up.
    backend: StateBackend = await open_state(state.config(), create=False, read_only=read_only)
    try:
        return await fn(backend)
    finally:
        await backend.close()


def _get_run(state: CliState, run_id: str, *, read_only: bool = False) -> RunRecord:
    """The run ``run_id`` names: its full id or a unique prefix."""
    from flujo.state.run_ids import resolve_run_id

    async def get(backend: StateBackend) -> RunRecord | None:
        return await backend.get_run(await resolve_run_id(backend, run_id))

    record: RunRecord | None = asyncio.run(_with_state(state, get, read_only=read_only))
    if record is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    return record


@runs.command("list")
@click.option(
    "--status",
    type=click.Choice(
        ["running", "interrupted", "paused", "succeeded", "failed", "blocked", "limit_exceeded"]
    ),
    default=None,
)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def list_runs(state: CliState, status: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    from flujo.domain.models import RunStatus

    wanted = RunStatus(status) if status else None
    records: list[RunRecord] = asyncio.run(
        _with_state(state, lambda b: b.list_runs(status=wanted, limit=limit), read_only=True)
    )
    if as_json:
        echo_json([r.to_dict(with_steps=False) for r in records])
        return
    if not records:
        click.echo("no runs")
        return
    from flujo.cli._output import echo_table, human_time

    echo_table(
        ("RUN", "CREATED", "STATUS", "PIPELINE", "ERROR"),
        (
            (r.run_id, human_time(r.created_at), r.status.value, r.pipeline_name, r.error)
            for r in records
        ),
    )


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def show_run(state: CliState, run_id: str, as_json: bool) -> None:
    """Show everything about one run: the run, its steps, then each plugin's section
    (policy decisions, evaluations, memory writes, ...)."""
    from flujo.application.run_view import PluginSection, plugin_sections
    from flujo.state.run_ids import resolve_run_id

    config = state.config()

    async def view(backend: StateBackend) -> tuple[RunRecord | None, list[PluginSection]]:
        record = await backend.get_run(await resolve_run_id(backend, run_id))
        if record is None:
            return None, []
        return record, await plugin_sections(record, backend, config)

    found, sections = asyncio.run(_with_state(state, view, read_only=True))
    if found is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    if as_json:
        echo_json({**found.to_dict(), "sections": {s.plugin: s.to_dict() for s in sections}})
        return
    from flujo.cli._view import render_run

    click.echo("\n".join(render_run(found, sections)))


@runs.command("resume")
@click.argument("run_id", required=False)
@click.option("--stale", is_flag=True, help="Claim and finish every run whose worker died.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="With --stale: how many runs to claim.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run(s) as JSON.")
@_QUIET
@click.pass_obj
def resume_run(
    state: CliState, run_id: str | None, stale: bool, limit: int, as_json: bool, quiet: bool
) -> None:
    """Continue RUN_ID at its first unfinished step, or with --stale every abandoned run.

    A run is abandoned when its worker stopped renewing its lease ([state] lease_s). Each one
    is claimed by exactly one worker, however many run this at once.
    """
    if stale == (run_id is not None):
        raise click.UsageError("give either RUN_ID or --stale")
    with Interrupts(lambda r: _report(r, as_json, stop.exit_code)) as stop:
        progress = _progress(state, quiet)
        try:
            if run_id is not None:
                record = _get_run(state, run_id)
                stop.result = _resume_one(state, record, None, stop, progress)
            else:
                code = _resume_stale(state, limit, as_json, stop, progress)
        finally:
            if progress is not None:
                progress.close()
        if run_id is not None:
            assert stop.result is not None
            code = _report(stop.result, as_json, stop.exit_code)
        sys.exit(code)


@runs.command("approve")
@click.argument("run_id")
@click.option(
    "--input",
    "answer",
    default=None,
    help="The answer, as JSON (checked against the step's schema).",
)
@click.option("--reason", default=None, help="Why (kept with who answered).")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.pass_obj
def approve_run(
    state: CliState, run_id: str, answer: str | None, reason: str | None, as_json: bool
) -> None:
    """Answer the human step paused run RUN_ID waits at; any worker then resumes it."""
    value: Any = None
    if answer is not None:
        try:
            value = json.loads(answer)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--input") from None
        except RecursionError:  # deeper than the parser goes: too deep to store anyway
            raise click.BadParameter("JSON nested too deeply", param_hint="--input") from None
    _answer(state, run_id, as_json, approve=True, answer=value, reason=reason)


@runs.command("reject")
@click.argument("run_id")
@click.option("--reason", required=True, help="Why (kept with who rejected it).")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.pass_obj
def reject_run(state: CliState, run_id: str, reason: str, as_json: bool) -> None:
    """Refuse the paused run RUN_ID: at a human step it ends failed; a tool call does not run,
    and the model is told why when the run continues."""
    _answer(state, run_id, as_json, approve=False, answer=None, reason=reason)


def _answer(
    state: CliState, run_id: str, as_json: bool, *, approve: bool, answer: Any, reason: str | None
) -> None:
    from flujo.application.runner import Flujo
    from flujo.application.targets import load_target
    from flujo.domain.models import RunStatus

    record = _get_run(state, run_id)
    if not record.pipeline_ref:
        raise TargetError(f"run {record.run_id} does not record where its pipeline is defined")
    pipeline = load_target(record.pipeline_ref)
    runner: Flujo[Any] = Flujo(pipeline, config=state.config(), pipeline_ref=record.pipeline_ref)
    try:
        # The runner tells the engine that waits on the run (a Temporal workflow), as it does
        # for every caller; `next_step` is what that engine says happens now.
        done, next_step = runner._sync(
            runner._answer(
                record.run_id, approve, answer, reason if approve else reason or "", None
            )
        )
    finally:
        runner.close()
    if as_json:
        echo_json(done.to_dict(with_steps=False))
        return
    click.echo(f"run {done.run_id}: {done.status.value}: {done.error}")
    if next_step is not None:
        click.echo(next_step)
    elif done.status is RunStatus.INTERRUPTED:  # approved, or a tool call rejected
        click.echo(f"continue it with `flujo runs resume {done.run_id}` (or any --stale worker)")


def _resume_stale(
    state: CliState, limit: int, as_json: bool, stop: Interrupts, progress: Progress | None
) -> int:
    """Claim and finish stale runs with :func:`flujo.application.stale.drain_stale` (what
    ``Flujo.resume_stale_async`` does), each with its own run's pipeline."""
    from flujo.application.lease import new_worker_id
    from flujo.application.stale import drain_stale
    from flujo.domain.models import RunStatus

    worker = new_worker_id()
    lease_s = state.config().state.lease_s
    results: list[PipelineResult] = []
    failures = 0

    def resume(run_id: str) -> PipelineResult | None:
        nonlocal failures
        try:
            result = _resume_one(state, _get_run(state, run_id), worker, stop, progress)
        except (RunLeasedError, RunFinishedError, LeaseLostError):
            raise  # taken over: drain_stale skips it
        except FlujoError as exc:  # this run cannot be resumed here; the drain goes on
            failures += 1
            click.echo(f"error: {exc}", err=True)
            return None
        results.append(result)
        if result.status is RunStatus.INTERRUPTED:
            if not as_json:
                click.echo(resume_hint(result.run_id, result.error), err=True)
        else:
            failures += not result.succeeded
            if not as_json:
                click.echo(f"run {result.run_id}: {result.status.value}")
        return result

    async def drain(backend: StateBackend) -> None:
        # Each run is resumed by the sync runner (its own loop thread), from a thread of this
        # loop's: signals still reach the main thread, which only waits here.
        await drain_stale(
            backend,
            worker,
            lease_s,
            lambda run_id: asyncio.to_thread(resume, run_id),
            limit=limit,
            stopped=lambda: stop.signum is not None,
        )

    asyncio.run(_with_state(state, drain))
    if as_json:
        echo_json([r.to_dict() for r in results])
    elif not results and not failures and stop.signum is None:
        click.echo("no stale runs")
    if stop.signum is not None:
        return stop.exit_code
    return 1 if failures else 0


def _resume_one(
    state: CliState,
    record: RunRecord,
    worker_id: str | None,
    stop: Interrupts,
    progress: Progress | None = None,
) -> PipelineResult:
    from flujo.application.runner import Flujo
    from flujo.application.targets import load_target

    if not record.pipeline_ref:
        raise TargetError(
            f"run {record.run_id} does not record where its pipeline is defined (it was not a "
            "module-level attribute); resume it from Python with Flujo(pipeline).resume(run_id)"
        )
    try:
        pipeline = load_target(record.pipeline_ref)
    except TargetError as exc:
        raise TargetError(
            f"run {record.run_id}: its pipeline can no longer be loaded: {exc}"
        ) from None
    runner: Flujo[Any] = Flujo(pipeline, config=state.config(), pipeline_ref=record.pipeline_ref)
    if worker_id is not None:
        runner.worker_id = worker_id  # the claim's lease is ours: resume under it
    stop.attach(runner)
    if progress is not None:
        progress.expect(len(runner.pipeline.steps))
    with runner:
        return runner.resume(record.run_id)
