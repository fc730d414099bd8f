"""The middleware chain around one step: policies, validation, the agent, retries, limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from flujo.application._maybe_await import maybe_await
from flujo.domain.context import PipelineContext
from flujo.domain.errors import (
    InputValidationError,
    PolicyViolation,
    StepTimeoutError,
    UsageLimitExceededError,
)
from flujo.domain.events import PolicyDecided
from flujo.domain.interfaces import GovernancePolicy, PolicyDecision
from flujo.domain.models import Step, StepResult, StepStatus, Usage, UsageLimits
from flujo.domain.scope import StepScope, reset_step_scope, set_step_scope

PolicyListener = Callable[[PolicyDecided], None]


class StepCoordinator:
    """Runs one step through the chain (DESIGN.md, "Data flow of one run").

    1. every policy's ``inspect_input``, in order: DENY blocks the step before the agent is
       called, REDACT passes the redacted data on;
    2. the input is validated against the step's input type;
    3. the agent runs (with the step's timeout), its tool calls routed through every policy's
       ``inspect_tool_call``; failures are retried up to ``max_retries``;
    4. every policy's optional ``inspect_output``;
    5. the run's usage limits are checked.

    A policy that raises anything but :class:`PolicyViolation` fails the step: a policy that
    cannot be evaluated never lets data through.
    """

    def __init__(
        self,
        policies: Sequence[GovernancePolicy] = (),
        *,
        on_decision: PolicyListener | None = None,
    ) -> None:
        self.policies = tuple(policies)
        self._on_decision = on_decision

    def _decided(
        self,
        scope: StepScope,
        policy: GovernancePolicy,
        where: str,
        decision: PolicyDecision,
        *,
        tool_name: str | None = None,
        reason: str | None = None,
    ) -> None:
        if self._on_decision is not None:
            self._on_decision(
                PolicyDecided(
                    scope.run_id, scope.step_name, policy.name, where, decision, tool_name, reason
                )
            )

    async def _inspect(self, scope: StepScope, where: str, data: Any) -> Any:
        for policy in self.policies:
            method = getattr(policy, f"inspect_{where}", None)
            if method is None:
                continue
            try:
                decision, data = await maybe_await(method(scope.context, data))
            except PolicyViolation as exc:
                self._decided(scope, policy, where, PolicyDecision.DENY, reason=exc.reason)
                raise
            decision = PolicyDecision(decision)
            self._decided(scope, policy, where, decision)
            if decision is PolicyDecision.DENY:
                raise PolicyViolation(
                    policy.name, f"the {where} of step {scope.step_name!r}", where=where
                )
        return data

    async def guard_tool_call(self, scope: StepScope, tool_name: str, args: dict[str, Any]) -> None:
        """Ask every policy about a tool call (:class:`~flujo.domain.scope.ToolGate`)."""
        for policy in self.policies:
            try:
                decision = PolicyDecision(
                    await maybe_await(policy.inspect_tool_call(scope.context, tool_name, args))
                )
            except PolicyViolation as exc:
                self._decided(
                    scope,
                    policy,
                    "tool_call",
                    PolicyDecision.DENY,
                    tool_name=tool_name,
                    reason=exc.reason,
                )
                raise
            self._decided(scope, policy, "tool_call", decision, tool_name=tool_name)
            if decision is not PolicyDecision.ALLOW:
                # REDACT has no meaning for a call; refusing it is the safe reading.
                raise PolicyViolation(policy.name, f"tool call {tool_name!r}", where="tool_call")

    async def inspect_tool_result(self, scope: StepScope, tool_name: str, result: Any) -> Any:
        """Let every policy with ``inspect_tool_result`` see (and redact) a tool's result."""
        for policy in self.policies:
            method = getattr(policy, "inspect_tool_result", None)
            if method is None:
                continue
            try:
                decision, result = await maybe_await(method(scope.context, tool_name, result))
            except PolicyViolation as exc:
                self._decided(
                    scope,
                    policy,
                    "tool_result",
                    PolicyDecision.DENY,
                    tool_name=tool_name,
                    reason=exc.reason,
                )
                raise
            decision = PolicyDecision(decision)
            self._decided(scope, policy, "tool_result", decision, tool_name=tool_name)
            if decision is PolicyDecision.DENY:
                raise PolicyViolation(
                    policy.name, f"the result of tool {tool_name!r}", where="tool_result"
                )
        return result

    async def execute_step(
        self,
        step: Step,
        data: Any,
        context: PipelineContext,
        *,
        run_id: str,
        run_usage: Usage,
        limits: UsageLimits | None = None,
    ) -> StepResult:
        """Run ``step`` on ``data`` and report the outcome; never raises for step failures."""
        started = time.perf_counter()
        usage = Usage()
        attempts = 0
        scope = StepScope(
            run_id,
            step.name,
            context,
            self if self.policies else None,
            limits,
            run_usage,
            usage,
            step.tags,
        )

        def result(status: StepStatus, output: Any = None, error: str | None = None) -> StepResult:
            return StepResult(
                step.name,
                status,
                output,
                error,
                attempts,
                (time.perf_counter() - started) * 1000.0,
                usage,
            )

        try:
            if self.policies:
                data = await self._inspect(scope, "input", data)
            data = step.validate_input(data)
        except PolicyViolation as exc:
            return result(StepStatus.BLOCKED, error=str(exc))
        except InputValidationError as exc:
            return result(StepStatus.FAILED, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a broken policy fails the step (fail closed)
            return result(StepStatus.FAILED, error=f"policy error: {type(exc).__name__}: {exc}")

        last_error = ""
        while attempts <= step.max_retries:
            attempts += 1
            token = set_step_scope(scope)
            try:
                if step.timeout_s is None:
                    output = await step.agent.run(data, context=context)
                else:
                    try:
                        output = await asyncio.wait_for(
                            step.agent.run(data, context=context), step.timeout_s
                        )
                    except TimeoutError:
                        raise StepTimeoutError(step.name, step.timeout_s) from None
            except PolicyViolation as exc:
                return result(StepStatus.BLOCKED, error=str(exc))
            except UsageLimitExceededError as exc:
                return result(StepStatus.LIMIT_EXCEEDED, error=str(exc))
            except Exception as exc:  # noqa: BLE001 - any agent error is retried, then recorded
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            finally:
                reset_step_scope(token)
            if limits is not None:
                total = Usage(
                    run_usage.input_tokens,
                    run_usage.output_tokens,
                    run_usage.requests,
                    run_usage.cost_usd,
                )
                total.add(usage)
                crossed = limits.first_crossed(total)
                if crossed is not None:
                    return result(
                        StepStatus.LIMIT_EXCEEDED, output, f"usage limit exceeded: {crossed}"
                    )
            if self.policies:
                try:
                    output = await self._inspect(scope, "output", output)
                except PolicyViolation as exc:
                    return result(StepStatus.BLOCKED, error=str(exc))
                except Exception as exc:  # noqa: BLE001 - fail closed, as for inputs
                    return result(
                        StepStatus.FAILED, error=f"policy error: {type(exc).__name__}: {exc}"
                    )
            return result(StepStatus.SUCCEEDED, output)
        return result(StepStatus.FAILED, error=last_error)
