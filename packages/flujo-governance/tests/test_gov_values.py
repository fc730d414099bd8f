"""PII inside values that are not strings never reaches a sink: an ``int`` card number, a
``SimpleNamespace``, a dataclass (with an ``init=False`` field), a pydantic model, bytes, nested
containers, and text long enough to overflow a database page, with non-ASCII PII. Checked in
every row the run leaves in SQLite (file and WAL) and PostgreSQL, and in what other plugins'
observers receive (the context included), in ``redact`` and ``pseudonymize`` modes, over a
resumed run too."""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path
from typing import Any

import pytest
from gov_testkit import database_bytes, make_config
from pydantic import BaseModel

from flujo import Flujo, Pipeline, PipelineContext, RunStatus, Step, hookimpl
from flujo.config import FlujoConfig
from flujo.domain.events import RunFinalized, StepCompleted
from flujo.testing.pytest_plugin import SQLITE_STATE_FILE

EMAIL = "ñandú.pérez@example.com"
CARD = 4111111111111111
SSN = "536-22-1234"
IBAN = "DE89 3704 0044 0532 0130 00"
PHONE = "Тел: +7 495 123-45-67"
NEEDLES = [EMAIL, str(CARD), "4111 1111 1111 1111", SSN, IBAN, "DE89370400440532013000"]
NEEDLES += ["+7 495 123-45-67"]


@dataclasses.dataclass
class Profile:
    name: str
    email: str
    ssn: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.ssn = f"SSN {SSN}"


class Card(BaseModel):
    number: int
    holder: str


class Ctx(PipelineContext):
    card: Any = None  # holds a pseudonym once stored, so not `int`
    extra: Any = None


def _values() -> dict[str, Any]:
    return {
        "card": CARD,
        "ns": types.SimpleNamespace(email=EMAIL, iban=IBAN),
        "profile": Profile("Ana", EMAIL),
        "model": Card(number=CARD, holder=EMAIL),
        "bytes": EMAIL.encode(),
        "nested": [(CARD,), {"k": [SSN, {"deep": PHONE}]}],
        # Past SQLite's page size: the value lands in an overflow page (and is TOASTed on
        # PostgreSQL); the PII is at its end.
        "long": "é" * 9000 + f" write to {EMAIL}",
    }


def produce(text: str, context: Ctx) -> dict[str, Any]:
    context.card = CARD
    context.extra = [types.SimpleNamespace(email=EMAIL), Profile("Ana", EMAIL)]
    return _values()


def finish(values: Any) -> Profile:
    return Profile("Ana", EMAIL)


class Sink:
    """Another plugin: records every payload the core hands to observers."""

    def __init__(self) -> None:
        self.payloads: list[Any] = []

    @hookimpl
    def flujo_step_completed(self, event: StepCompleted) -> None:
        self.payloads += [event.input, event.step.output, event.step.error, event.context]

    @hookimpl
    def flujo_run_finalized(self, event: RunFinalized) -> None:
        run = event.run
        self.payloads += [run.input, run.output, run.last_output, run.error, run.context]
        self.payloads += [(s.output, s.error) for s in run.steps]


def _dump(value: Any) -> str:
    """Everything a payload holds, as text (objects by their attributes, not their repr)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, BaseModel):
            return obj.model_dump(mode="json")
        if isinstance(obj, bytes):
            return obj.decode("utf-8", "replace")
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        if hasattr(obj, "__dict__"):
            return vars(obj)
        if isinstance(obj, set | frozenset | tuple):
            return list(obj)
        return repr(obj)

    return json.dumps(value, default=default, ensure_ascii=False)


def assert_clean(where: str, text: str) -> None:
    for needle in NEEDLES:
        assert needle not in text, f"{needle!r} leaked into {where}"


def _config(tmp_path: Path, flujo_state_uri: str, mode: str, *observers: object) -> FlujoConfig:
    toml = f'[governance]\npolicies = ["pii"]\n[governance.pii]\nmode = "{mode}"\n'
    return make_config(tmp_path, toml, *observers, state_uri=flujo_state_uri)


async def _postgres_text(uri: str) -> str:
    """Every row of every table of the test's schema, as JSON text."""
    import psycopg

    parts: list[str] = []
    async with await psycopg.AsyncConnection.connect(uri) as conn:
        tables = await (
            await conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        ).fetchall()
        assert tables, "the run created no tables in the test schema"
        for (table,) in tables:
            rows = await (
                await conn.execute(f'SELECT row_to_json(t)::text FROM "{table}" t')
            ).fetchall()
            parts += [row[0] for row in rows]
    return "\n".join(parts)


async def _stored_text(tmp_path: Path, flujo_state_uri: str) -> str:
    if flujo_state_uri.startswith("sqlite"):
        return database_bytes(tmp_path, SQLITE_STATE_FILE).decode("utf-8", "replace")
    return await _postgres_text(flujo_state_uri)


@pytest.mark.parametrize("mode", ["redact", "pseudonymize"])
async def test_non_string_values_are_scrubbed_in_every_sink(
    tmp_path: Path, flujo_state_uri: str, mode: str
) -> None:
    sink = Sink()
    config = _config(tmp_path, flujo_state_uri, mode, sink)
    pipeline = Step.from_callable(produce, name="produce") >> Step.from_callable(
        finish, name="finish"
    )
    async with Flujo(pipeline, config=config, context_model=Ctx) as runner:
        result = await runner.run_async("start")
    assert result.status is RunStatus.SUCCEEDED, result.error
    stored = await _stored_text(tmp_path, flujo_state_uri)
    assert "<EMAIL" in stored  # the run's rows are there, scrubbed
    assert_clean(f"the {flujo_state_uri.split(':')[0]} rows", stored)
    assert "é" * 100 in stored  # the long value was stored (scrubbed), not dropped
    assert_clean("another plugin's payloads", _dump(sink.payloads))
    # The caller still gets the real output.
    assert result.output == Profile("Ana", EMAIL)


class Flaky:
    """Fails the first time it runs, so the run stops and is resumed."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, values: Any) -> str:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("transient")
        return f"{values['ns']} then {EMAIL} and {CARD}"


async def test_resumed_pseudonymized_run_stores_no_pii_and_restores_the_caller_output(
    tmp_path: Path, flujo_state_uri: str
) -> None:
    sink = Sink()
    config = _config(tmp_path, flujo_state_uri, "pseudonymize", sink)
    flaky = Flaky()
    pipeline = Pipeline(
        [Step.from_callable(produce, name="produce"), Step.from_callable(flaky, name="flaky")],
    )
    async with Flujo(pipeline, config=config, context_model=Ctx) as runner:
        failed = await runner.run_async("start")
    assert failed.status is RunStatus.FAILED
    config = _config(tmp_path, flujo_state_uri, "pseudonymize", sink)
    async with Flujo(pipeline, config=config, context_model=Ctx) as runner:
        resumed = await runner.resume_async(failed.run_id)
    assert resumed.status is RunStatus.SUCCEEDED, resumed.error
    assert_clean("the stored rows", await _stored_text(tmp_path, flujo_state_uri))
    assert_clean("another plugin's payloads", _dump(sink.payloads))
    # The resumed process never saw the first process's originals: what the stored data
    # carried stays a pseudonym, and the values added after the resume come back real,
    # without being confused with the first process's pseudonyms.
    assert isinstance(resumed.output, str)
    assert resumed.output.endswith(f"then {EMAIL} and {CARD}")
    assert EMAIL not in resumed.output.split(" then ")[0]
