"""The optional policy methods and the runner lifecycle hooks plugins build on."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from flujo import (
    Flujo,
    FlujoConfig,
    Pipeline,
    PipelineContext,
    PolicyDecision,
    RunStatus,
    Step,
    ToolCallRefused,
    hookimpl,
    make_agent_async,
)
from flujo.application.runtime import Runtime
from flujo.domain.events import RunFinalized, RunStarted, StepCompleted, StepStarted
from flujo.plugins.manager import PluginManager
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.models import call_tool, scripted_model

SECRET = "4111-1111-1111-1111"


class Vault:
    """Replaces SECRET by a placeholder everywhere it leaves the process; restores it for the
    caller. A stand-in for a pseudonymizing PII policy."""

    name = "vault"

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        if SECRET in str(data):
            return PolicyDecision.REDACT, str(data).replace(SECRET, "<CARD_1>")
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        if tool_name == "wipe_disk":
            raise ToolCallRefused(self.name, "wiping disks is not allowed here")
        return PolicyDecision.ALLOW

    def inspect_tool_result(
        self, context: PipelineContext, tool_name: str, result: Any
    ) -> tuple[PolicyDecision, Any]:
        if SECRET in str(result):
            return PolicyDecision.REDACT, str(result).replace(SECRET, "<CARD_1>")
        return PolicyDecision.ALLOW, result

    def scrub(self, context: PipelineContext, value: Any) -> Any:
        return json.loads(json.dumps(value).replace(SECRET, "<CARD_1>"))

    def restore(self, context: PipelineContext, output: Any) -> Any:
        return str(output).replace("<CARD_1>", SECRET)


class Tools:
    def __init__(self) -> None:
        self.wiped = False

    async def card_on_file(self, customer: str) -> str:
        """The card a customer has on file."""
        return f"{customer} pays with {SECRET}"

    async def wipe_disk(self) -> str:
        """Erase everything."""
        self.wiped = True
        return "wiped"


class CardContext(PipelineContext):
    card: str = ""


def _echo_with_secret(text: str, context: CardContext) -> str:
    context.card = SECRET
    logging.getLogger("tests.policy").info("echo: %s", text)
    return f"{text} / card {SECRET}"


async def test_refused_tool_call_lets_the_step_go_on_and_results_are_redacted(
    tmp_path: Path,
) -> None:
    tools = Tools()
    model = scripted_model(
        call_tool("wipe_disk"),
        call_tool("card_on_file", customer="ana"),
        "All done",
    )
    agent = make_agent_async(model, "Help.", tools=[tools.wipe_disk, tools.card_on_file])
    async with Flujo(
        Pipeline([Step("agent", agent)]),
        config=FlujoConfig(),
        state=SQLiteBackend(tmp_path / "s.db"),
        policies=[Vault()],
    ) as runner:
        result = await runner.run_async("go")
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "All done"
    assert tools.wiped is False
    returns = [r.tool_returns for r in model.requests[1:]]
    assert returns[0] == {
        "wipe_disk": "Tool call refused by policy 'vault': wiping disks is not allowed here"
    }
    assert returns[1] == {"card_on_file": "ana pays with <CARD_1>"}  # the model never saw it


class Sink:
    """Everything other plugins are handed, the step events' contexts included."""

    def __init__(self) -> None:
        self.payloads: list[Any] = []
        self.contexts: list[PipelineContext] = []

    @hookimpl
    def flujo_run_started(self, event: RunStarted) -> None:
        self.payloads += [event.input, event.context.model_dump(mode="json")]
        self.payloads.append(dict(event.context_keys))
        self.contexts.append(event.context)

    @hookimpl
    def flujo_step_started(self, event: StepStarted) -> None:
        self.payloads += [event.input, event.context.model_dump(mode="json")]
        self.payloads.append(dict(event.context_keys))
        self.contexts.append(event.context)

    @hookimpl
    def flujo_wrap_step(self, event: StepStarted) -> None:
        self.payloads += [event.input, event.context.model_dump(mode="json")]

    @hookimpl
    def flujo_step_completed(self, event: StepCompleted) -> None:
        self.payloads += [event.input, event.step.output, event.step.error]
        self.payloads += [event.context.model_dump(mode="json"), dict(event.context_keys)]
        self.contexts.append(event.context)

    @hookimpl
    def flujo_run_finalized(self, event: RunFinalized) -> None:
        run = event.run
        self.payloads += [run.input, run.output, run.context, [s.output for s in run.steps]]


async def test_scrub_keeps_secrets_out_of_the_database_and_plugins_and_restore_returns_them(
    tmp_path: Path, caplog: Any
) -> None:
    sink = Sink()
    manager = PluginManager()
    manager.register(sink, "sink")
    db = tmp_path / "s.db"
    pipeline = Step.from_callable(_echo_with_secret, name="echo") >> Step.from_callable(
        str.upper, name="up"
    )
    caplog.set_level(logging.DEBUG)
    live = CardContext()
    async with Flujo(
        pipeline,
        config=FlujoConfig(plugin_manager=manager),
        state=SQLiteBackend(db),
        policies=[Vault()],
        context_model=CardContext,
    ) as runner:
        result = await runner.run_async(f"my card is {SECRET}", context=live)
    # The steps saw the placeholder (and one added the raw value); the caller gets it back.
    # Step results are what a caller prints or logs: the stored, scrubbed copies.
    assert result.steps[0].output == "my card is <CARD_1> / card <CARD_1>"
    assert result.output == f"MY CARD IS {SECRET} / CARD {SECRET}"
    # ...nothing else holds it: not the database, not the other plugins' payloads.
    raw = db.read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("s.db-")
    )
    assert SECRET.encode() not in raw
    assert b"<CARD_1>" in raw
    assert SECRET not in json.dumps(sink.payloads)
    assert "<CARD_1>" in json.dumps(sink.payloads)
    # Observers get a scrubbed snapshot of the context, never the live object.
    assert live.card == SECRET
    assert sink.contexts
    assert all(c is not live for c in sink.contexts)
    # run started, step 1 started (card empty), step 1 completed, step 2 started and completed
    cards = [getattr(c, "card", None) for c in sink.contexts]
    assert cards == ["", "", "<CARD_1>", "<CARD_1>", "<CARD_1>"]
    # The core logs nothing raw either (this policy does not scrub logs: the core must not
    # put the secret in its own records; the step's own line logged the redacted input).
    assert caplog.records, "the step's log line is missing: the log check would prove nothing"
    assert SECRET not in caplog.text


class Service:
    def __init__(self) -> None:
        self.flushed = 0

    async def flush(self) -> None:
        self.flushed += 1


class Lifecycle:
    def __init__(self) -> None:
        self.service = Service()

    @hookimpl
    def flujo_runtime_started(self, runtime: Runtime) -> None:
        runtime.services["svc"] = self.service

    @hookimpl
    def flujo_runtime_closing(self, runtime: Runtime) -> None:
        runtime.tasks.schedule("svc.flush", runtime.services["svc"].flush)


async def test_runtime_services_and_closing_flush(tmp_path: Path) -> None:
    plugin = Lifecycle()
    manager = PluginManager()
    manager.register(plugin, "lifecycle")
    runner: Flujo = Flujo(
        Pipeline([Step.from_callable(str.upper, name="up")]),
        config=FlujoConfig(plugin_manager=manager),
        state=SQLiteBackend(tmp_path / "s.db"),
    )
    await runner.start()
    assert runner.services["svc"] is plugin.service
    assert plugin.service.flushed == 0
    report = await runner.aclose()
    assert report is not None
    assert report.completed == 1
    assert plugin.service.flushed == 1


async def test_a_failing_runtime_started_hook_fails_the_start_naming_the_plugin(
    tmp_path: Path,
) -> None:
    import pytest

    from flujo import PluginError

    class Broken:
        @hookimpl
        def flujo_runtime_started(self, runtime: Runtime) -> None:
            raise RuntimeError("index unreachable")

    manager = PluginManager()
    manager.register(Broken(), "broken-memory")
    runner: Flujo = Flujo(
        Pipeline([Step.from_callable(str.upper, name="up")]),
        config=FlujoConfig(plugin_manager=manager),
        state=SQLiteBackend(tmp_path / "s.db"),
    )
    with pytest.raises(
        PluginError, match="plugin 'broken-memory': flujo_runtime_started failed: index unreachable"
    ):
        await runner.run_async("x")


class Numbering:
    """Pseudonymizes SECRET as ``<CARD_1>``, as a per-run numbering policy does: the stored
    text says nothing about whose value it was."""

    name = "numbering"

    def scrub(self, context: PipelineContext, value: Any) -> Any:
        return json.loads(json.dumps(value).replace(SECRET, "<CARD_1>"))


class _FailsOnce:
    def __init__(self) -> None:
        self.failed = False

    def __call__(self, text: str) -> str:
        if not self.failed:
            self.failed = True
            raise RuntimeError("transient")
        return text


class CardKeys:
    """The key of the ``card`` field each step event carries, after the card is set."""

    def __init__(self) -> None:
        self.keys: list[str | None] = []

    @hookimpl
    def flujo_step_completed(self, event: StepCompleted) -> None:
        self.keys.append(event.context_keys.get("card"))


async def test_a_resumed_run_keeps_the_keys_of_its_flagged_context_fields(tmp_path: Path) -> None:
    """Resumed, the context holds the stored placeholder (``<CARD_1>``); the key of the field
    (what memory scopes and matches by) must still be the value's keyed fingerprint, not the
    placeholder every run shares."""
    seen = CardKeys()
    manager = PluginManager()
    manager.register(seen, "card-keys")
    pipeline = (
        Step.from_callable(_echo_with_secret, name="echo")
        >> Step.from_callable(_FailsOnce(), name="flaky")
        >> Step.from_callable(str.upper, name="up")
    )
    async with Flujo(
        pipeline,
        config=FlujoConfig(plugin_manager=manager),
        state=SQLiteBackend(tmp_path / "s.db"),
        policies=[Numbering()],
        context_model=CardContext,
    ) as runner:
        failed = await runner.run_async("hello", context=CardContext())
        assert failed.status is RunStatus.FAILED
        scrubbing = runner.runtime.scrubbing
        key = scrubbing.fingerprint(SECRET)
        # The context a resume starts from holds the placeholder; a plugin keying its field
        # (memory's scope) still gets the value's key.
        _, context = await runner._resumable(runner.runtime.state, failed.run_id)
        assert isinstance(context, CardContext)
        assert context.card == "<CARD_1>"
        assert await scrubbing.key(context, context.card, field="card") == key
        assert await scrubbing.key(context, context.card) == "<CARD_1>"  # no field: no key
        resumed = await runner.resume_async(failed.run_id)
        assert resumed.status is RunStatus.SUCCEEDED
    # echo, flaky (failed); then flaky and up on the resumed run.
    assert seen.keys == [key, key, key, key]
