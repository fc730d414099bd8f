"""Conformance suite for :class:`~flujo.domain.interfaces.GovernancePolicy` implementations."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from flujo.domain.context import PipelineContext
from flujo.domain.errors import PolicyViolation
from flujo.domain.interfaces import GovernancePolicy, PolicyDecision

if TYPE_CHECKING:
    from flujo.domain.models import PipelineResult

__all__ = ["GovernancePolicyConformance"]

_NOT_A_DECISION = "must be a flujo.PolicyDecision member (ALLOW, DENY or REDACT)"


async def _resolve(value: Any) -> Any:
    """Await ``value`` when the policy method was async; policies may be either."""
    return await value if inspect.isawaitable(value) else value


def _check_pair(result: Any, method: str) -> tuple[PolicyDecision, Any]:
    assert isinstance(result, tuple) and len(result) == 2, (
        f"{method} must return a (PolicyDecision, data) tuple, got {result!r}"
    )
    decision, data = result
    assert isinstance(decision, PolicyDecision), (
        f"{method} returned decision {decision!r}, which {_NOT_A_DECISION}"
    )
    return decision, data


class GovernancePolicyConformance:
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
    ``allowed_tool_call`` (``("search", {"q": "x"})``) and ``pipeline_context`` (the context
    the policy's methods receive).

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

        received, result = await _run_once(policy, denied_input, tmp_path)
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
        received, result = await _run_once(policy, allowed_input, tmp_path)
        assert result.succeeded, f"the run ended {result.status.value}: {result.error}"
        assert received == [allowed_input], f"the agent received {received!r}"


async def _run_once(
    policy: GovernancePolicy, data: Any, tmp_path: Path
) -> tuple[list[Any], PipelineResult]:
    """Run a one-step pipeline guarded by ``policy``; return what the agent saw and the result."""
    from flujo.application.runner import Flujo
    from flujo.config import FlujoConfig
    from flujo.domain.models import Pipeline, Step
    from flujo.state.sqlite import SQLiteBackend

    received: list[Any] = []

    async def agent(value: Any) -> Any:
        received.append(value)
        return "done"

    pipeline = Pipeline([Step.from_callable(agent, name="guarded")], name="conformance")
    state = SQLiteBackend(tmp_path / "s.db")
    try:
        async with Flujo(
            pipeline,
            config=FlujoConfig(),
            state=state,
            policies=[policy],
        ) as runner:
            result = await runner.run_async(data)
    finally:
        await state.close()
    return received, result
