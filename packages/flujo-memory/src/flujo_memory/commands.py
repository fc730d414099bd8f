"""``flujo memory ...``: imported only when the command runs (see ``plugin.py``)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from flujo_memory.errors import MemoryUserError

T = TypeVar("T")


def _pairs(values: tuple[str, ...], option: str, *, typed: bool) -> dict[str, Any]:
    """``k=v`` options as a dict; with ``typed``, values that parse as JSON keep that type."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise MemoryUserError(f"{option} {item!r}: expected KEY=VALUE")
        value: Any = raw
        if typed:
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
            if isinstance(value, (dict, list)) or value is None:
                value = raw
        out[key.strip()] = value
    return out


async def _outbox_state(config: Any, *, read_only: bool) -> Any:
    """The state database holding the outbox, never created here.

    Memories live in the vector store; the state database only queues step outputs (the
    outbox). Where it does not exist (or, read-only, predates this plugin's table) nothing is
    queued, so an empty in-memory stand-in answers: ``memory search`` works without any run,
    and no command of this group makes a ``.flujo/flujo.db`` appear. Outbox tables older than
    this plugin are :class:`StateOutdatedError`, never "nothing queued".
    """
    from flujo.domain.errors import StateNotFoundError
    from flujo.state import migrated, open_state
    from flujo.state.sqlite import SQLiteBackend
    from flujo_memory import outbox

    try:
        state = await open_state(config, create=False, read_only=read_only)
    except StateNotFoundError:
        state = None
    if state is not None:
        try:
            # Outdated outbox tables (flujo-memory upgraded since) raise StateOutdatedError:
            # an empty stand-in would hide the rows they hold.
            if not read_only or await migrated(state, outbox.migrations(state.dialect)):
                return state
        except BaseException:
            await state.close()
            raise
        await state.close()
    empty = SQLiteBackend(":memory:")
    await empty.open(outbox.migrations(empty.dialect))
    return empty


def _run(work: Callable[[Any], Awaitable[T]], *, read_only: bool = False) -> T:
    """Open the outbox's state and a :class:`MemoryService`, run ``work(service)``, close."""
    from flujo.application.scrubbing import Scrubbing
    from flujo.cli import current_config
    from flujo_memory.service import MemoryService

    config = current_config()

    async def main() -> T:
        state = await _outbox_state(config, read_only=read_only)
        registry = config.plugin_manager.registry if config.plugin_manager else None
        # The configured policies: `add` scrubs its text, flagged scope values are keyed.
        service = MemoryService(
            config, state, registry=registry, scrubbing=Scrubbing.for_config(config)
        )
        try:
            service.validate_names()
            return await work(service)
        finally:
            try:
                await service.close()
            finally:
                await state.close()

    return asyncio.run(main())


_SCOPE_HELP = "Scope field value, KEY=VALUE (repeat for each [memory] scope_fields entry)."


@click.group("memory")
def memory() -> None:
    """Long-term memory: add, search, forget, stats, reindex (flujo-memory)."""


@memory.command("add")
@click.argument("text")
@click.option("--scope", "scope", multiple=True, metavar="KEY=VALUE", help=_SCOPE_HELP)
@click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE", help="Metadata (JSON-typed).")
def add(text: str, scope: tuple[str, ...], meta: tuple[str, ...]) -> None:
    """Remember TEXT now (embedded and stored at once)."""
    scope_d = _pairs(scope, "--scope", typed=False)
    meta_d = _pairs(meta, "--meta", typed=True)
    stored = _run(lambda s: s.add(text, scope=scope_d, metadata=meta_d))
    click.echo(stored.id)


@memory.command("search")
@click.argument("query")
@click.option("--scope", "scope", multiple=True, metavar="KEY=VALUE", help=_SCOPE_HELP)
@click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE", help="Metadata filter.")
@click.option("--limit", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def search(
    query: str, scope: tuple[str, ...], meta: tuple[str, ...], limit: int, as_json: bool
) -> None:
    """Find the memories closest to QUERY within a scope."""
    scope_d = _pairs(scope, "--scope", typed=False)
    filter_d = _pairs(meta, "--meta", typed=True)
    from flujo.plugin import echo_table, human_time, json_time, printable

    hits = _run(
        lambda s: s.search(query, scope=scope_d, limit=limit, filter=filter_d), read_only=True
    )
    if as_json:
        rows = [
            {
                "id": h.memory.id,
                "score": h.score,
                "text": h.memory.text,
                "scope": h.memory.scope,
                "run_id": h.memory.run_id,
                "step_name": h.memory.step_name,
                "metadata": h.memory.metadata,
                "created_at": json_time(h.memory.created_at),
            }
            for h in hits
        ]
        click.echo(json.dumps(rows, ensure_ascii=False, default=str))
        return
    if not hits:
        click.echo("no memories found")
        return
    echo_table(
        ("SCORE", "ID", "CREATED", "RUN", "TEXT"),
        (
            (
                f"{h.score:.3f}",
                h.memory.id[:12],
                human_time(h.memory.created_at),
                h.memory.run_id,
                printable(h.memory.text, 100),
            )
            for h in hits
        ),
        right=(0,),
    )


async def _full_run_id(state: Any, run_id: str) -> str:
    """``run_id`` or the one run id it is a prefix of, as every command takes run ids.

    A full id is taken as typed: memories live in the vector store, which outlives (or may
    never have had) the state database a prefix is resolved in.
    """
    from flujo.plugin import resolve_run_id

    if re.fullmatch(r"[0-9a-f]{32}", run_id):
        return run_id
    return await resolve_run_id(state, run_id)


@memory.command("forget")
@click.option("--scope", "scope", multiple=True, metavar="KEY=VALUE", help="Scope (partial ok).")
@click.option("--run", "run_id", default=None, metavar="RUN_ID", help="Every memory of a run.")
@click.option("--id", "ids", multiple=True, metavar="ID", help="Memory ids.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def forget(scope: tuple[str, ...], run_id: str | None, ids: tuple[str, ...], as_json: bool) -> None:
    """Delete memories (store and outbox) by scope, run or ids; print the counts."""
    chosen = sum(bool(x) for x in (scope, run_id, ids))
    if chosen != 1:
        raise MemoryUserError("flujo memory forget: give exactly one of --scope, --run, --id")
    scope_d = _pairs(scope, "--scope", typed=False)

    async def work(service: Any) -> Any:
        full_id = await _full_run_id(service.state, run_id) if run_id else None
        return await service.forget(scope=scope_d or None, run_id=full_id, ids=list(ids) or None)

    report = _run(work)
    if as_json:
        click.echo(json.dumps({"store": report.store, "outbox": report.outbox}))
    else:
        click.echo(f"forgot {report.store} stored and {report.outbox} queued memories")


@memory.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(as_json: bool) -> None:
    """Store, embedder, collection record, memory and outbox counts."""
    data = _run(lambda s: s.stats(), read_only=True)
    if as_json:
        click.echo(json.dumps(data, default=str))
        return
    from flujo.plugin import printable

    for key, value in data.items():
        # printable: an absent value (no error yet, no recorded embedder) is "-", not "None";
        # a stored error is outside text, shown on one line.
        click.echo(f"{key:18} {printable(value)}")


@memory.command("reindex")
def reindex() -> None:
    """Re-embed every memory with the configured embedder (after changing it)."""

    async def work(service: Any) -> int:
        make_bar: Any = click.progressbar
        bar: Any = make_bar(length=1, label="re-embedding", file=sys.stderr)
        with bar:

            def progress(done: int, total: int) -> None:
                bar.length = max(total, 1)
                bar.update(done - bar.pos)

            count: int = await service.reindex(progress)
        return count

    total = _run(work)
    click.echo(f"re-embedded {total} memories")
