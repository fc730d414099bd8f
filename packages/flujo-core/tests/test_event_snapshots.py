"""The context a step event hands to plugins (``event.context``, ``event.context_keys``) is
built when a plugin first reads it, and shows the context as it was when the event was made.

Real runner, real SQLite state, real scrubbing policies (sync and async ones, written here:
the core's contract is with any policy's ``scrub``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flujo import Flujo, FlujoConfig, Pipeline, Step
from flujo.application.scrubbing import Scrubbing
from flujo.domain.context import PipelineContext
from flujo.domain.events import ContextSnapshot, RunStarted, StepCompleted, StepStarted
from flujo.domain.interfaces import StepCommit
from flujo.plugin import hookimpl
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend

SECRET = "4111-1111-1111-1111"


class CardContext(PipelineContext):
    card: str = ""
    note: str = ""


def _sets_the_card(text: str, context: CardContext) -> str:
    context.card = SECRET
    return text


def _notes(text: str, context: CardContext) -> str:
    context.note = f"after {context.card}"
    return text


class SyncScrub:
    name = "sync-scrub"

    def __init__(self) -> None:
        self.calls = 0

    def scrub(self, context: PipelineContext, value: Any) -> Any:
        self.calls += 1
        return json.loads(json.dumps(value).replace(SECRET, "<CARD>"))


class AsyncScrub:
    name = "async-scrub"

    async def scrub(self, context: PipelineContext, value: Any) -> Any:
        return json.loads(json.dumps(value).replace(SECRET, "<CARD>"))


class Keeper:
    """Keeps every event and reads nothing from it during the run."""

    def __init__(self) -> None:
        self.events: list[RunStarted | StepStarted | StepCompleted] = []

    @hookimpl
    def flujo_run_started(self, event: RunStarted) -> None:
        self.events.append(event)

    @hookimpl
    def flujo_wrap_step(self, event: StepStarted) -> None:
        self.events.append(event)

    @hookimpl
    def flujo_step_completed(self, event: StepCompleted) -> None:
        self.events.append(event)


def _runner(tmp_path: Path, plugin: object, policies: list[Any]) -> Flujo[Any, Any]:
    manager = PluginManager()
    assert manager.register(plugin, "plugin").status == "ok"
    pipeline = Pipeline(
        [
            Step.from_callable(_sets_the_card, name="card"),
            Step.from_callable(_notes, name="notes"),
        ]
    )
    return Flujo(
        pipeline,
        config=FlujoConfig(plugin_manager=manager),
        state=SQLiteBackend(tmp_path / "s.db"),
        policies=policies,
        context_model=CardContext,
    )


async def test_a_plugin_that_reads_no_context_costs_no_snapshot_nor_its_scrub(
    tmp_path: Path,
) -> None:
    keeper, scrub = Keeper(), SyncScrub()
    async with _runner(tmp_path, keeper, [scrub]) as runner:
        result = await runner.run_async("hi", context=CardContext())
    assert result.succeeded, result.error
    assert len(keeper.events) == 5  # run started, 2 x (step started, step completed)
    assert not any(e.snapshot.built for e in keeper.events)
    # What the run scrubbed for itself (input, outputs, the stored context of each commit,
    # the final output): nothing more for the events' contexts. Reading them scrubs the
    # before-the-step ones (the after-the-step ones reuse the commit's scrub).
    before = scrub.calls
    for event in keeper.events:
        assert event.context is event.context  # built once
    assert scrub.calls == before + 3


async def test_a_context_read_late_is_the_context_as_it_was_when_the_event_was_made(
    tmp_path: Path,
) -> None:
    """The step changes the live context after its start event was made; reading the event's
    snapshot after the run still shows the context before the step, scrubbed."""
    for policies in ([SyncScrub()], [AsyncScrub()], []):
        keeper = Keeper()
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        async with _runner(folder, keeper, policies) as runner:
            result = await runner.run_async("hi", context=CardContext())
        assert result.succeeded, result.error
        contexts = [e.context for e in keeper.events]
        card = "<CARD>" if policies else SECRET
        seen = [
            (type(e).__name__, c.card, c.note) for e, c in zip(keeper.events, contexts, strict=True)
        ]
        assert seen == [
            ("RunStarted", "", ""),
            ("StepStarted", "", ""),
            ("StepCompleted", card, ""),
            ("StepStarted", card, ""),
            ("StepCompleted", card, f"after {card}"),
        ], policies
        live = CardContext(card=SECRET)
        assert all(c is not live and not isinstance(c, ContextSnapshot) for c in contexts)
        if policies:
            assert SECRET not in json.dumps([c.model_dump(mode="json") for c in contexts])
            key = runner.runtime.scrubbing.fingerprint(SECRET)
            assert keeper.events[2].context_keys["card"] == key  # flagged: keyed, never raw


class AwaitableScrub:
    """Declared sync, returns an awaitable all the same: a lazy snapshot cannot await it."""

    name = "awaitable-scrub"

    def scrub(self, context: PipelineContext, value: Any) -> Any:
        async def later() -> Any:
            return json.loads(json.dumps(value).replace(SECRET, "<CARD>"))

        return later()


async def test_a_snapshot_that_cannot_be_scrubbed_fails_the_reading_plugin_never_hands_it_raw(
    tmp_path: Path,
) -> None:
    seen: list[Any] = []

    class Reader:
        @hookimpl
        def flujo_wrap_step(self, event: StepStarted) -> None:
            seen.append(event.context)

    scrubbing = Scrubbing([AwaitableScrub()])
    assert scrubbing.synchronous  # it says it is
    async with _runner(tmp_path, Reader(), [AwaitableScrub()]) as runner:
        # The first step's start snapshot holds an empty card: not a leak either way; the
        # second one's would hold the card.
        await runner.run_async("hi", context=CardContext())
        failures = [str(f) for f in runner.runtime.tasks.failures]
    assert seen == []  # every read raised
    assert len(failures) == 2
    assert all("returned an awaitable" in f for f in failures), failures
    assert SECRET not in "".join(failures)


class CommitOnly:
    """Implements only ``flujo_step_commit`` (no ``flujo_step_completed``)."""

    def __init__(self) -> None:
        self.cards: list[str] = []

    @hookimpl
    def flujo_step_commit(self, event: StepCompleted, commit: StepCommit) -> None:
        self.cards.append(event.context.card)  # type: ignore[attr-defined]


async def test_a_commit_only_plugin_sees_the_context_after_the_step(tmp_path: Path) -> None:
    plugin = CommitOnly()
    async with _runner(tmp_path, plugin, []) as runner:
        result = await runner.run_async("hi", context=CardContext())
    assert result.succeeded, result.error
    assert plugin.cards == [SECRET, SECRET]
