"""Conformance suite for :class:`~flujo.domain.interfaces.GovernancePolicy` implementations."""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel

from flujo.domain.context import PipelineContext
from flujo.domain.errors import PolicyViolation
from flujo.domain.interfaces import GovernancePolicy, PolicyDecision
from flujo.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from flujo.domain.models import PipelineResult

__all__ = ["GovernancePolicyConformance"]

_NOT_A_DECISION = "must be a flujo.PolicyDecision member (ALLOW, DENY or REDACT)"


async def _resolve(value: Any) -> Any:
    """Await ``value`` when the policy method was async; policies may be either."""
    return await value if inspect.isawaitable(value) else value


def _check_pair(result: Any, method: str) -> tuple[PolicyDecision, Any]:
    assert isinstance(result, tuple), (
        f"{method} must return a (PolicyDecision, data) tuple, got {result!r}"
    )
    assert len(result) == 2, f"{method} must return a (PolicyDecision, data) tuple, got {result!r}"
    decision, data = result
    assert isinstance(decision, PolicyDecision), (
        f"{method} returned decision {decision!r}, which {_NOT_A_DECISION}"
    )
    return decision, data


def _scrub_of(policy: GovernancePolicy) -> Any:
    scrub = getattr(policy, "scrub", None)
    if scrub is None:
        pytest.skip("the policy has no scrub (it is optional)")
    assert callable(scrub), "scrub must be a method"
    return scrub


def _as_text(value: Any) -> str:
    """Everything ``value`` holds as text: objects by their fields, not their ``repr``."""

    def default(obj: Any) -> Any:
        if isinstance(obj, BaseModel):
            return obj.model_dump(mode="json")
        if isinstance(obj, bytes):
            return obj.decode("utf-8", "replace")
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
        if isinstance(obj, set | frozenset | tuple):
            return sorted(map(str, obj))
        if hasattr(obj, "__dict__"):
            return {k: v for k, v in vars(obj).items() if not k.startswith("__")}
        return repr(obj)

    return json.dumps(value, default=default, ensure_ascii=False)


@dataclasses.dataclass
class _Holder:
    note: str
    hidden: str = dataclasses.field(init=False, default="")


class _Carrier(BaseModel):
    value: Any


def _shapes(secret: str, number: int | None) -> dict[str, Any]:
    """``secret`` (and ``number``) in every shape a step may return them in."""
    holder = _Holder("see hidden")
    holder.hidden = f"hidden: {secret}"
    return {
        "namespace": types.SimpleNamespace(value=secret),
        "dataclass": holder,
        "model": _Carrier(value=[secret]),
        "bytes": secret.encode(),
        "containers": [(secret,), {"set": {secret}}, {secret: "as a key"}],
        "number": number,
    }


class _Sink:
    """Another plugin: what the runner hands to observers."""

    def __init__(self) -> None:
        self.payloads: list[Any] = []

    @hookimpl
    def flujo_step_completed(self, event: Any) -> None:
        self.payloads += [event.input, event.step.output, event.step.error, event.context]

    @hookimpl
    def flujo_run_finalized(self, event: Any) -> None:
        run = event.run
        self.payloads += [run.input, run.output, run.error, run.context]
        self.payloads += [(s.output, s.error) for s in run.steps]


class _ScrubChecks:
    """The ``scrub``/``restore`` checks (mixed into :class:`GovernancePolicyConformance`)."""

    @pytest.mark.asyncio
    async def test_scrub_removes_the_sensitive_value_wherever_it_sits(
        self,
        policy: GovernancePolicy,
        pipeline_context: PipelineContext,
        sensitive_value: str | None,
        sensitive_number: int | None,
    ) -> None:
        """``scrub(context, value)`` gets the JSON data the runner stores (dicts, lists,
        strings, numbers): the sensitive value goes wherever it sits (in a nested list, as a
        dict key, as an ``int``), and the shape around it stays. Skipped without ``scrub`` or
        without ``sensitive_value``."""
        scrub = _scrub_of(policy)
        if sensitive_value is None:
            pytest.skip("the `sensitive_value` fixture is None")
        data: dict[str, Any] = {
            "text": f"note: {sensitive_value}",
            "nested": [[{"deep": sensitive_value}]],
            "keys": {sensitive_value: 1},
            "clean": 7,
        }
        if sensitive_number is not None:
            data["number"] = sensitive_number
            data["numbers"] = [sensitive_number]
        scrubbed = await _resolve(scrub(pipeline_context, data))
        text = _as_text(scrubbed)
        assert sensitive_value not in text, f"scrub left {sensitive_value!r} in {scrubbed!r}"
        if sensitive_number is not None:
            assert str(sensitive_number) not in text, (
                f"scrub left the number {sensitive_number!r} in {scrubbed!r}"
            )
        assert isinstance(scrubbed, dict), f"scrub must keep the data's shape: {scrubbed!r}"
        assert set(scrubbed) >= {"text", "nested", "clean"}, (
            f"scrub must keep the data's shape: {scrubbed!r}"
        )
        assert scrubbed["clean"] == 7, "scrub changed a value that holds nothing sensitive"

    @pytest.mark.asyncio
    async def test_scrub_keeps_clean_data_and_is_deterministic(
        self,
        policy: GovernancePolicy,
        pipeline_context: PipelineContext,
        allowed_input: Any,
        denied_input: Any,
    ) -> None:
        """Clean data comes back equal; the same data scrubbed twice gives the same result."""
        scrub = _scrub_of(policy)
        clean = {"input": allowed_input, "n": [1, 2.5, True, None]}
        assert await _resolve(scrub(pipeline_context, clean)) == clean, (
            "scrub changed data that holds nothing sensitive"
        )
        if denied_input is not None:
            first = await _resolve(scrub(pipeline_context, {"v": denied_input}))
            second = await _resolve(scrub(pipeline_context, {"v": denied_input}))
            assert first == second, f"scrub is not deterministic: {first!r}, then {second!r}"

    @pytest.mark.asyncio
    async def test_nothing_stored_or_observed_holds_the_sensitive_value_whatever_its_type(
        self,
        policy: GovernancePolicy,
        sensitive_value: str | None,
        sensitive_number: int | None,
        tmp_path: Path,
    ) -> None:
        """In a real run whose step returns the sensitive value inside a ``SimpleNamespace``,
        a dataclass (``init=False`` field), a pydantic model, bytes, tuples, sets and dict
        keys: the database file (and its WAL) and another plugin's observers never get it.
        Skipped without ``scrub`` or without ``sensitive_value``."""
        _scrub_of(policy)
        if sensitive_value is None:
            pytest.skip("the `sensitive_value` fixture is None")
        shapes = _shapes(sensitive_value, sensitive_number)

        def produce(data: Any) -> Any:
            return shapes

        sink = _Sink()
        _, result, stored = await _run_once(policy, "go", tmp_path, produce, sink)
        # A policy may also block such an output (it inspects outputs): nothing leaks either way.
        assert result.status.value in ("succeeded", "blocked"), (
            f"the run ended {result.status.value}: {result.error}"
        )
        needles = [sensitive_value] + ([] if sensitive_number is None else [str(sensitive_number)])
        observed = _as_text(sink.payloads)
        for needle in needles:
            assert needle.encode() not in stored, f"{needle!r} is in the database file"
            assert needle not in observed, f"{needle!r} reached another plugin's observer"

    @pytest.mark.asyncio
    async def test_the_caller_gets_the_output_restored_or_scrubbed(
        self,
        policy: GovernancePolicy,
        denied_input: Any,
        sensitive_value: str | None,
        tmp_path: Path,
    ) -> None:
        """A step echoes ``denied_input`` (redacted by the policy) and adds the sensitive value
        itself: the database never holds it, and the caller's output is either restored (the
        original values back, through ``restore``) or still scrubbed: never a mix that swaps
        one value for another. ``restore`` leaves clean output unchanged. Skipped without
        ``scrub``, without ``sensitive_value`` or with a non-string ``denied_input``."""
        _scrub_of(policy)
        if sensitive_value is None or not isinstance(denied_input, str):
            pytest.skip("needs a string `denied_input` and a `sensitive_value`")

        restore = getattr(policy, "restore", None)
        if callable(restore):
            context = PipelineContext(run_id="conformance-restore")
            assert await _resolve(restore(context, "clean output")) == "clean output", (
                "restore changed an output that holds no placeholder"
            )

        def echo(data: Any) -> Any:
            return f"{data} | {sensitive_value}"

        received, result, stored = await _run_once(policy, denied_input, tmp_path, echo, None)
        if result.status.value == "blocked":
            return  # a policy that denies the input: nothing ran, nothing to restore
        assert result.succeeded, f"the run ended {result.status.value}: {result.error}"
        assert sensitive_value.encode() not in stored, "the sensitive value is in the database"
        restored = f"{received[0]} | {sensitive_value}" if received else None
        original = f"{denied_input} | {sensitive_value}"
        output = result.output
        assert output in (original, restored) or sensitive_value not in str(output), (
            f"the caller's output {output!r} is neither restored ({original!r}) nor scrubbed"
        )


class GovernancePolicyConformance(_ScrubChecks):
    """Checks that a governance policy keeps the contract the step coordinator relies on.

    Subclass it in your test suite (the class name must start with ``Test``) and provide a
    ``policy`` fixture; every ``test_*`` method below is then run against your policy::

        from flujo.testing.conformance import GovernancePolicyConformance

        class TestDenyWords(GovernancePolicyConformance):
            @pytest.fixture
            def policy(self):
                return DenyWords(["secret"])

            @pytest.fixture
            def denied_input(self):
                return "tell me the secret"

    Optional fixtures, override them to describe your policy: ``denied_input`` (a value the
    policy must deny or redact; ``None`` skips the checks that need one), ``allowed_input``
    (``"hello"``), ``sensitive_value`` (what must be gone after a redaction; ``None``),
    ``denied_tool_call`` (``(tool_name, args)`` the policy must refuse; ``None`` skips),
    ``allowed_tool_call`` (``("search", {"q": "x"})``), ``sensitive_number`` (an ``int`` the
    policy's ``scrub`` must remove, e.g. a card number; ``None``) and ``pipeline_context`` (the
    context the policy's methods receive).

    Policies with the optional ``scrub`` (and ``restore``) are held to what the runner relies
    on: what ``scrub`` returns holds no ``sensitive_value`` wherever it sits in the JSON data
    the runner hands it (nested, as a key, as a number), clean data comes back equal, and in a
    real run nothing the database or another plugin's observers get holds the sensitive value
    whatever the Python type a step returned it in (a ``SimpleNamespace``, a dataclass with an
    ``init=False`` field, a pydantic model, bytes, sets and tuples), while the caller's output
    is either restored (equal to the original) or scrubbed.

    Async checks are marked ``@pytest.mark.asyncio``, so they run in pytest-asyncio's strict
    and auto modes alike.
    """

    # ------------------------------------------------------------------ fixtures

    @pytest.fixture
    def policy(self) -> GovernancePolicy:
        """The policy under test. **Required**: override it in your subclass."""
        pytest.fail(
            f"{type(self).__name__} must define a `policy` fixture returning the policy to test"
        )

    @pytest.fixture
    def denied_input(self) -> Any:
        """An input the policy must DENY (or raise ``PolicyViolation`` for) or REDACT.

        ``None`` (the default) means the policy denies no input, and the checks that need one
        are skipped.
        """
        return None

    @pytest.fixture
    def allowed_input(self) -> Any:
        """An input the policy must ALLOW, unchanged. Default ``"hello"``."""
        return "hello"

    @pytest.fixture
    def sensitive_value(self) -> str | None:
        """The part of ``denied_input`` a redaction must remove, e.g. an e-mail address.

        ``None`` (the default) only requires a redaction to change a string input.
        """
        return None

    @pytest.fixture
    def denied_tool_call(self) -> tuple[str, dict[str, Any]] | None:
        """A ``(tool_name, args)`` call the policy must refuse; ``None`` (default) skips."""
        return None

    @pytest.fixture
    def allowed_tool_call(self) -> tuple[str, dict[str, Any]]:
        """A ``(tool_name, args)`` call the policy must ALLOW.

        Default ``("search", {"q": "x"})``.
        """
        return ("search", {"q": "x"})

    @pytest.fixture
    def sensitive_number(self) -> int | None:
        """An ``int`` the policy's ``scrub`` must remove (e.g. ``4111111111111111``); ``None``
        (the default) skips the number checks."""
        return None

    @pytest.fixture
    def pipeline_context(self) -> PipelineContext:
        """The context passed to the policy's methods. Override to use your context model."""
        return PipelineContext(run_id="conformance-run")

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _skip_without(value: Any, fixture: str) -> None:
        if value is None:
            pytest.skip(f"the `{fixture}` fixture is None: the policy declares no such case")

    # ------------------------------------------------------------------ checks

    def test_has_a_name(self, policy: GovernancePolicy) -> None:
        """``policy.name`` is a non-empty string: decisions, audit rows and errors name it."""
        name = getattr(policy, "name", None)
        assert isinstance(name, str), f"policy.name must be a str, got {name!r}"
        assert name.strip(), "policy.name must not be empty"

    @pytest.mark.asyncio
    async def test_inspect_input_returns_decision_and_data(
        self, policy: GovernancePolicy, pipeline_context: PipelineContext, allowed_input: Any
    ) -> None:
        """``inspect_input(context, data)`` returns (or, when async, resolves to) a 2-tuple
        ``(PolicyDecision, data)``. Sync and async implementations are both valid."""
        result = await _resolve(policy.inspect_input(pipeline_context, allowed_input))
        _check_pair(result, "inspect_input")

    @pytest.mark.asyncio
    async def test_allowed_input_passes_unchanged(
        self, policy: GovernancePolicy, pipeline_context: PipelineContext, allowed_input: Any
    ) -> None:
        """``allowed_input`` is ALLOWed, and ALLOW hands the data on unchanged (equal to the
        input): only REDACT may change what the agent receives."""
        decision, data = _check_pair(
            await _resolve(policy.inspect_input(pipeline_context, allowed_input)), "inspect_input"
        )
        assert decision is PolicyDecision.ALLOW, (
            f"allowed_input {allowed_input!r} was not allowed: {decision!r}"
        )
        assert data == allowed_input, (
            f"ALLOW must return the data unchanged: got {data!r} for {allowed_input!r}"
        )

    @pytest.mark.asyncio
    async def test_denied_input_is_denied_or_redacted(
        self,
        policy: GovernancePolicy,
        pipeline_context: PipelineContext,
        denied_input: Any,
        sensitive_value: str | None,
    ) -> None:
        """``denied_input`` is DENYed, makes the policy raise ``flujo.PolicyViolation``, or is
        REDACTed. A redaction must remove ``sensitive_value`` (when given) and must change a
        string input. Skipped when ``denied_input`` is ``None``."""
        self._skip_without(denied_input, "denied_input")
        try:
            result = await _resolve(policy.inspect_input(pipeline_context, denied_input))
        except PolicyViolation as exc:
            violation: PolicyViolation | None = exc
        else:
            violation = None
        if violation is not None:
            assert violation.reason, "a PolicyViolation should say why the input was denied"
            return
        decision, data = _check_pair(result, "inspect_input")
        assert decision is not PolicyDecision.ALLOW, f"denied_input {denied_input!r} was allowed"
        if decision is PolicyDecision.REDACT:
            if sensitive_value is not None:
                assert sensitive_value not in str(data), (
                    f"REDACT left the sensitive value {sensitive_value!r} in {data!r}"
                )
            if isinstance(denied_input, str):
                assert data != denied_input, f"REDACT returned the string input unchanged: {data!r}"

    @pytest.mark.asyncio
    async def test_inspect_tool_call_returns_a_decision(
        self,
        policy: GovernancePolicy,
        pipeline_context: PipelineContext,
        allowed_tool_call: tuple[str, dict[str, Any]],
    ) -> None:
        """``inspect_tool_call(context, tool_name, args)`` returns (or resolves to) a bare
        ``PolicyDecision`` (not a tuple), and ``allowed_tool_call`` is ALLOWed."""
        tool_name, args = allowed_tool_call
        decision = await _resolve(policy.inspect_tool_call(pipeline_context, tool_name, args))
        assert isinstance(decision, PolicyDecision), (
            f"inspect_tool_call returned {decision!r}, which {_NOT_A_DECISION}"
        )
        assert decision is PolicyDecision.ALLOW, (
            f"allowed_tool_call {allowed_tool_call!r} was not allowed: {decision!r}"
        )

    @pytest.mark.asyncio
    async def test_denied_tool_call_is_denied(
        self,
        policy: GovernancePolicy,
        pipeline_context: PipelineContext,
        denied_tool_call: tuple[str, dict[str, Any]] | None,
    ) -> None:
        """``denied_tool_call`` is DENYed or makes the policy raise ``flujo.PolicyViolation``.
        REDACT has no meaning for a tool call and fails this check. Skipped when
        ``denied_tool_call`` is ``None``."""
        self._skip_without(denied_tool_call, "denied_tool_call")
        assert denied_tool_call is not None
        tool_name, args = denied_tool_call
        try:
            decision = await _resolve(policy.inspect_tool_call(pipeline_context, tool_name, args))
        except PolicyViolation:
            return
        assert isinstance(decision, PolicyDecision), (
            f"inspect_tool_call returned {decision!r}, which {_NOT_A_DECISION}"
        )
        assert decision is PolicyDecision.DENY, (
            f"denied_tool_call {denied_tool_call!r} must be DENYed, got {decision!r}"
            + (" (REDACT is not valid for tool calls)" if decision is PolicyDecision.REDACT else "")
        )

    @pytest.mark.asyncio
    async def test_decisions_are_deterministic(
        self,
        policy: GovernancePolicy,
        pipeline_context: PipelineContext,
        allowed_input: Any,
        denied_input: Any,
        allowed_tool_call: tuple[str, dict[str, Any]],
        denied_tool_call: tuple[str, dict[str, Any]] | None,
    ) -> None:
        """The same input or tool call, inspected twice, gets the same decision (and the same
        redacted data): a policy must not depend on call order or hidden state."""

        async def input_outcome(data: Any) -> tuple[str, Any]:
            try:
                decision, out = _check_pair(
                    await _resolve(policy.inspect_input(pipeline_context, data)), "inspect_input"
                )
            except PolicyViolation:
                return ("violation", None)
            return (decision.value, out)

        async def tool_outcome(call: tuple[str, dict[str, Any]]) -> str:
            try:
                decision = await _resolve(policy.inspect_tool_call(pipeline_context, *call))
            except PolicyViolation:
                return "violation"
            return str(decision)

        inputs = [allowed_input] + ([] if denied_input is None else [denied_input])
        for data in inputs:
            first, second = await input_outcome(data), await input_outcome(data)
            assert first == second, f"input {data!r}: first {first!r}, then {second!r}"
        calls = [allowed_tool_call] + ([] if denied_tool_call is None else [denied_tool_call])
        for call in calls:
            first_call, second_call = await tool_outcome(call), await tool_outcome(call)
            assert first_call == second_call, (
                f"tool call {call!r}: first {first_call!r}, then {second_call!r}"
            )

    @pytest.mark.asyncio
    async def test_inspect_output_has_the_input_shape(
        self, policy: GovernancePolicy, pipeline_context: PipelineContext, allowed_input: Any
    ) -> None:
        """The optional ``inspect_output(context, output)`` returns ``(PolicyDecision, output)``
        like ``inspect_input``, and ALLOW hands the output on unchanged. Skipped when the
        policy has no ``inspect_output``."""
        method = getattr(policy, "inspect_output", None)
        if method is None:
            pytest.skip("the policy has no inspect_output (it is optional)")
        assert callable(method), "inspect_output must be a method"
        try:
            result = await _resolve(method(pipeline_context, allowed_input))
        except PolicyViolation:
            return
        decision, data = _check_pair(result, "inspect_output")
        if decision is PolicyDecision.ALLOW:
            assert data == allowed_input, (
                f"ALLOW must return the output unchanged: got {data!r} for {allowed_input!r}"
            )

    @pytest.mark.asyncio
    async def test_blocks_a_real_run(
        self,
        policy: GovernancePolicy,
        denied_input: Any,
        sensitive_value: str | None,
        tmp_path: Path,
    ) -> None:
        """End to end, in a real :class:`flujo.Flujo` run with this policy: a denied input
        ends the run ``blocked`` and the agent is never called; a redacted input reaches the
        agent without ``sensitive_value``. Skipped when ``denied_input`` is ``None``."""
        self._skip_without(denied_input, "denied_input")
        from flujo.domain.models import RunStatus, StepStatus

        received, result, _ = await _run_once(policy, denied_input, tmp_path)
        if result.status is RunStatus.BLOCKED:
            assert received == [], f"the agent was called although the run was blocked: {received}"
            assert result.steps, "a blocked run must record the blocked step"
            assert result.steps[-1].status is StepStatus.BLOCKED
            return
        assert result.status is RunStatus.SUCCEEDED, (
            f"denied_input must block the run or be redacted; the run ended "
            f"{result.status.value}: {result.error}"
        )
        assert len(received) == 1, "a redacted input must reach the agent exactly once"
        if sensitive_value is not None:
            assert sensitive_value not in str(received[0]), (
                f"the agent received the sensitive value {sensitive_value!r}: {received[0]!r}"
            )
        if isinstance(denied_input, str):
            assert received[0] != denied_input, (
                "the run succeeded and the agent received denied_input unchanged: the policy "
                "neither denied nor redacted it"
            )

    @pytest.mark.asyncio
    async def test_allows_a_real_run(
        self, policy: GovernancePolicy, allowed_input: Any, tmp_path: Path
    ) -> None:
        """End to end, in a real :class:`flujo.Flujo` run with this policy: ``allowed_input``
        reaches the agent unchanged and the run succeeds."""
        received, result, _ = await _run_once(policy, allowed_input, tmp_path)
        assert result.succeeded, f"the run ended {result.status.value}: {result.error}"
        assert received == [allowed_input], f"the agent received {received!r}"


async def _run_once(
    policy: GovernancePolicy,
    data: Any,
    tmp_path: Path,
    step: Any = None,
    observer: object | None = None,
) -> tuple[list[Any], PipelineResult, bytes]:
    """Run a one-step pipeline guarded by ``policy``; return what the step received, the
    result, and the bytes of the state database (WAL included) after the runner closed.

    The step is ``step(data)`` (default: returns ``"done"``); ``observer`` is registered as
    another plugin."""
    from flujo.application.runner import Flujo
    from flujo.config import FlujoConfig
    from flujo.domain.models import Pipeline, Step
    from flujo.plugins.manager import PluginManager
    from flujo.state.sqlite import SQLiteBackend

    received: list[Any] = []

    async def agent(value: Any) -> Any:
        received.append(value)
        return "done" if step is None else step(value)

    manager = PluginManager()
    if observer is not None:
        manager.register(observer, "conformance-observer")
    pipeline = Pipeline([Step.from_callable(agent, name="guarded")], name="conformance")
    path = tmp_path / "s.db"
    state = SQLiteBackend(path)
    try:
        async with Flujo(
            pipeline,
            config=FlujoConfig(plugin_manager=manager),
            state=state,
            policies=[policy],
        ) as runner:
            result = await runner.run_async(data)
            stored = b"".join(
                p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("s.db")
            )
    finally:
        await state.close()
    return received, result, stored
