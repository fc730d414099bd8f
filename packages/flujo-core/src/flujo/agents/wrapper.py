"""LLM agents for pipeline steps, built on pydantic-ai.

:func:`make_agent_async` builds an :class:`AsyncAgentWrapper`: a pydantic-ai ``Agent`` behind
flujo's agent protocol (``async run(data, *, context)``). Around every run the wrapper

- routes each tool call the model makes through the step's policies
  (:meth:`flujo.domain.scope.StepScope.guard_tool_call`) *before* the tool runs, under every
  name the tool has (:class:`~flujo.domain.scope.ToolName`: the model-visible name and the id
  a plugin registered it under); a denial propagates as
  :class:`~flujo.domain.errors.PolicyViolation` and the step ends ``blocked``, a refusal
  (:class:`~flujo.domain.errors.ToolCallRefused`) becomes the tool's result; every result
  passes :meth:`~flujo.domain.scope.StepScope.inspect_tool_result` before the model sees it;
- routes pydantic-ai output functions (``output_type=[fn]``) through the same tool-call
  policies before they run (a refusal is told to the model as a retry);
- passes every other text the model is about to receive and no policy has seen yet (retry
  prompts a tool or an output function raised with ``ModelRetry``, tool returns that did not
  come from a guarded tool, later user messages) through ``inspect_tool_result`` too, right
  before each model request: nothing built from tool or context data reaches the provider
  unchecked;
- passes the run's remaining usage budget to pydantic-ai and turns its limit errors into
  :class:`~flujo.domain.errors.UsageLimitExceededError`;
- records tokens, requests and cost into the step (:func:`flujo.record_usage`), also for runs
  that fail;
- turns pydantic-ai's errors into flujo's: invalid output after the retries becomes a
  :class:`~flujo.domain.errors.StepFailedError` naming the validation problem, a run timeout a
  :class:`~flujo.domain.errors.StepTimeoutError`, a misconfigured model a
  :class:`~flujo.domain.errors.ConfigError`.

This module imports pydantic-ai; ``flujo`` imports it only when ``make_agent_async`` is first used.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import pydantic_core
from pydantic_ai import Agent
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import (
    AgentRunError,
    ApprovalRequired,
    ModelRetry,
    RunTimedOut,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
)
from pydantic_ai.exceptions import UserError as PydanticAIUserError
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestContext, infer_model, parse_model_id
from pydantic_ai.output import OutputContext
from pydantic_ai.providers import infer_provider_class
from pydantic_ai.tools import (
    DeferredToolRequests,
    DeferredToolResults,
    RunContext,
    Tool,
    ToolDenied,
)
from pydantic_ai.toolsets import FunctionToolset, ToolsetTool, WrapperToolset
from pydantic_ai.usage import RunUsage
from pydantic_ai.usage import UsageLimits as PydanticAIUsageLimits

from flujo.domain.approval import call_fingerprint, expired, expiry_at, pending_record
from flujo.domain.errors import (
    ConfigError,
    InnerStepFailed,
    PipelineDefinitionError,
    PluginError,
    StepFailedError,
    StepTimeoutError,
    ToolApprovalRequired,
    ToolCallRefused,
    UsageLimitExceededError,
)
from flujo.domain.models import StepStatus, Usage
from flujo.domain.scope import (
    StepScope,
    ToolName,
    current_step_scope,
    model_tool_name,
    record_usage,
)

if TYPE_CHECKING:
    from flujo.config import FlujoConfig
    from flujo.domain.context import PipelineContext

__all__ = ["DEFAULT_REQUEST_LIMIT", "AsyncAgentWrapper", "ToolSpec", "make_agent_async"]

OutputT = TypeVar("OutputT")

DEFAULT_REQUEST_LIMIT = 50
"""Model requests one agent run may make when the run has no ``requests`` limit of its own
(pydantic-ai's default too): a model stuck in a tool loop stops instead of spending forever."""

ToolSpec = Callable[..., Any] | Tool[Any] | str
"""A tool for :func:`make_agent_async`: an (async) function, a pydantic-ai ``Tool``, or the id of
a tool a plugin registered through ``flujo_register_tools``."""


# --------------------------------------------------------------------------- tool interception


@dataclass
class _PolicyGuardedToolset(WrapperToolset[Any]):
    """Asks the running step's policies about every tool call before the tool runs.

    A toolset wrapper sees each call after pydantic-ai validated its arguments and right before
    execution, whatever kind of tool it is; re-wrapping the functions would miss ``Tool``
    objects and lose their signatures. pydantic-ai lets exceptions other than ``ModelRetry`` and
    ``ToolFailed`` out of ``call_tool`` unchanged, so a ``PolicyViolation`` ends the run instead
    of being fed back to the model as a retry.
    """

    registered: Mapping[str, ToolName] = dataclasses.field(default_factory=dict)
    """Model-visible tool name (``acme__sql``) -> the name policies and the audit see: the id
    a plugin registered it under (``acme.sql``), with its aliases."""

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        scope = current_step_scope()
        if scope is None or scope.gate is None:
            return await super().call_tool(name, tool_args, ctx, tool)
        # Policies get plain JSON values (not the validated pydantic objects): they scan,
        # log and audit them, and must not be able to change what the tool receives.
        args = pydantic_core.to_jsonable_python(tool_args, fallback=repr)
        # A registered tool has one name for policies and the audit: its id (the model sees
        # the id's reversible model form, see flujo.domain.scope.model_tool_name).
        tool_name = self.registered.get(name) or ToolName(name)
        answered = _APPROVED.get()
        call_id = ctx.tool_call_id
        # A person approved exactly this call (its id and these arguments) at its pause.
        approved = (
            ctx.tool_call_approved
            and answered is not None
            and call_id is not None
            and answered.get(call_id) == call_fingerprint(tool_name, args)
        )
        try:
            await scope.guard_tool_call(tool_name, args, approved=approved)
        except ToolCallRefused as refused:
            # The tool does not run; the model is told why and may choose another way.
            return refused.tool_result
        except ToolApprovalRequired as wanted:
            if not approved or answered is None or call_id is None:
                # pydantic-ai defers the call: the run ends with DeferredToolRequests and the
                # wrapper pauses the step with this call's record (see AsyncAgentWrapper.run).
                raise ApprovalRequired(
                    metadata={
                        "tool": str(tool_name),
                        "args": args,
                        "policy": wanted.policy,
                        "reason": wanted.reason,
                        "expires_in_s": wanted.expires_in_s,
                    }
                ) from None
            # Approved: it runs, once.
            del answered[call_id]
        result = await super().call_tool(name, tool_args, ctx, tool)
        result = await scope.inspect_tool_result(tool_name, result)
        seen = _INSPECTED.get()
        if seen is not None:
            seen.add(id(result))  # the model request guard need not inspect it again
        return result


_APPROVED: ContextVar[dict[str, str] | None] = ContextVar("flujo_approved_calls", default=None)
"""Tool call id -> fingerprint of the arguments a person approved, while an agent resumes
from its approval pause; a call is taken out when it runs."""

_INSPECTED: ContextVar[set[int] | None] = ContextVar("flujo_inspected_parts", default=None)
"""Ids of the message parts of the current agent run the policies already saw (kept alive by
the run's message history, so an id is never reused while the run lasts)."""


def _unseen_parts(messages: Sequence[ModelMessage], seen: set[int]) -> list[tuple[int, int, Any]]:
    """``(message index, part index, part)`` of the request parts carrying content no policy
    has seen: retry prompts and feedback, tool returns other than what the guarded toolset
    returned (a ``ModelRetry`` travels as a tool return), user messages after the first request
    (the first one is the step's input, already inspected), anything new pydantic-ai adds."""
    found = []
    first_request = True
    for i, message in enumerate(messages):
        if not isinstance(message, ModelRequest):
            continue
        for j, part in enumerate(message.parts):
            if id(part) in seen or not hasattr(part, "content"):
                continue
            if isinstance(part, UserPromptPart) and first_request:
                continue
            if isinstance(part, ToolReturnPart) and id(part.content) in seen:
                continue
            found.append((i, j, part))
        first_request = False
    return found


@dataclass
class _PolicyGuard(AbstractCapability[Any]):
    """The step's policies on what pydantic-ai builds outside the toolset: output functions'
    calls, and every text of the next model request that no policy has seen yet.

    pydantic-ai turns a ``ModelRetry`` raised by a tool or an output function into a retry
    prompt *after* the toolset returned, and output functions are not tools of any toolset: a
    guard on tool calls and results alone lets both through to the provider.
    """

    registered: Mapping[str, ToolName] = dataclasses.field(default_factory=dict)
    """As :attr:`_PolicyGuardedToolset.registered`: a registered tool's retry prompt reaches
    policies under the tool's id, like its calls and results."""

    async def before_output_process(
        self, ctx: RunContext[Any], *, output_context: OutputContext, output: Any
    ) -> Any:
        scope = current_step_scope()
        if not output_context.has_function or scope is None or scope.gate is None:
            return output
        call = output_context.tool_call
        names = [n for n in (output_context.function_name, call.tool_name if call else None) if n]
        name = ToolName(names[0] if names else "output function", names)
        args = pydantic_core.to_jsonable_python(output, fallback=repr)
        try:
            await scope.guard_tool_call(name, args if isinstance(args, dict) else {"": args})
        except ToolCallRefused as refused:
            # The output function does not run; the model hears why, as for a refused tool.
            raise ModelRetry(refused.tool_result) from None
        return output

    async def before_model_request(
        self, ctx: RunContext[Any], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        scope = current_step_scope()
        if scope is None or scope.gate is None:
            return request_context
        seen = _INSPECTED.get()
        if seen is None:
            seen = set()
        replaced: dict[int, ModelMessage] = {}
        messages = request_context.messages
        for i, j, part in _unseen_parts(messages, seen):
            label = getattr(part, "tool_name", None) or "model request"
            label = self.registered.get(label) or label
            content = await scope.inspect_tool_result(label, part.content)
            new_part = (
                part if content is part.content else dataclasses.replace(part, content=content)
            )
            seen.add(id(new_part))
            if new_part is part:
                continue
            message = replaced.get(i, messages[i])
            assert isinstance(message, ModelRequest)
            parts = list(message.parts)
            parts[j] = new_part
            replaced[i] = dataclasses.replace(message, parts=parts)
        if replaced:
            # The request and the run's history both: later requests resend the history.
            old = {id(messages[i]): new for i, new in replaced.items()}
            request_context.messages = [old.get(id(m), m) for m in messages]
            ctx.messages[:] = [old.get(id(m), m) for m in ctx.messages]
        return request_context

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None  # holds runtime state, not part of an agent spec


def _resolve_tools(
    tools: Sequence[ToolSpec], config: FlujoConfig | None
) -> tuple[list[Callable[..., Any] | Tool[Any]], dict[str, ToolName]]:
    """Replace tool ids by the tools their plugins' factories make, named for the model by
    :func:`~flujo.domain.scope.model_tool_name` of their id (``acme.sql`` -> ``acme__sql``,
    whatever the function is called); also return each of those model names -> the
    :class:`ToolName` policies get (the id, aliased by the model name and function name).

    The configuration is only discovered when there is an id to resolve: an agent with plain
    function tools must not read ``flujo.toml`` or load plugins.
    """
    resolved: list[Callable[..., Any] | Tool[Any]] = []
    seen: dict[str, str] = {}  # model-visible name -> where that tool came from
    registered: dict[str, ToolName] = {}  # model-visible name -> the id, with its aliases
    for spec in tools:
        if not isinstance(spec, str):
            if not callable(spec) and not isinstance(spec, Tool):
                raise PipelineDefinitionError(f"tool {spec!r} is neither a function nor a tool id")
            _claim_name(seen, spec, f"function {getattr(spec, '__qualname__', spec)!r}")
            resolved.append(spec)
            continue
        from flujo.plugin import create

        if config is None:
            from flujo.config import shared_config

            config = shared_config()  # the process's, shared with the runner started later
        made = create("tools", spec, config)
        manager = config.plugin_manager
        owner = manager.registry.get("tools", spec).owner if manager else "?"
        visible = model_tool_name(spec)
        if isinstance(made, Tool):
            tool: Tool[Any] = copy.copy(made)  # the plugin's object is not renamed for others
            tool.name = visible
        elif callable(made):
            tool = Tool(made, name=visible)
        else:
            raise PluginError(
                owner, f"tool {spec!r}: factory returned {type(made).__name__}, not a function"
            )
        _claim_name(seen, tool, f"tool id {spec!r} of plugin {owner!r}")
        resolved.append(tool)
        function_name = getattr(tool.function, "__name__", "")
        registered[visible] = ToolName(spec, aliases=(visible, function_name))
    return resolved, registered


def _claim_name(seen: dict[str, str], tool: Callable[..., Any] | Tool[Any], origin: str) -> None:
    """Record the name the model will see for ``tool``; two tools with one name are an error
    at build time naming where both came from (pydantic-ai's own error names neither)."""
    name = tool.name if isinstance(tool, Tool) else getattr(tool, "__name__", repr(tool))
    if name in seen:
        raise PipelineDefinitionError(
            f"two tools of this agent are both named {name!r} for the model: {seen[name]} and "
            f"{origin}; rename one of the functions (or wrap it in a pydantic_ai.Tool with "
            "another name)"
        )
    seen[name] = origin


# --------------------------------------------------------------------------- usage and limits


def _flujo_usage(usage: RunUsage) -> Usage:
    """pydantic-ai's usage in flujo's terms (cost is 0 when pydantic-ai cannot price the model)."""
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        requests=usage.requests,
        cost_usd=float(usage.cost) if usage.cost is not None else 0.0,
    )


def _remaining_limits(scope: StepScope | None) -> PydanticAIUsageLimits:
    """The run's limits minus what the run and this step have spent so far."""
    limits = scope.limits if scope is not None else None
    if scope is None or limits is None:
        return PydanticAIUsageLimits(request_limit=DEFAULT_REQUEST_LIMIT)
    spent = Usage()
    spent.add(scope.run_usage)
    spent.add(scope.usage)
    return PydanticAIUsageLimits(
        request_limit=(
            max(0, limits.requests - spent.requests)
            if limits.requests is not None
            else DEFAULT_REQUEST_LIMIT
        ),
        total_tokens_limit=(
            max(0, limits.total_tokens - spent.total_tokens)
            if limits.total_tokens is not None
            else None
        ),
        cost_limit=(
            max(Decimal(0), Decimal(str(limits.cost_usd)) - Decimal(str(spent.cost_usd)))
            if limits.cost_usd is not None
            else None
        ),
    )


# --------------------------------------------------------------------------- error translation


def _validation_details(exc: BaseException) -> str | None:
    """The validation problem behind a pydantic-ai retry error, from its cause chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, pydantic_core.ValidationError):
            problems = []
            for error in current.errors(include_url=False)[:3]:
                where = ".".join(str(p) for p in error["loc"])
                problems.append(f"{where}: {error['msg']}" if where else error["msg"])
            return "; ".join(problems)
        current = current.__cause__ or current.__context__
    cause = exc.__cause__
    if cause is not None and str(cause):
        return str(cause).strip()
    return None


def _limit_message(
    exc: UsageLimitExceeded,
    scope: StepScope | None,
    budget: PydanticAIUsageLimits,
    this_run: Usage,
) -> str:
    """Say which limit stopped the run, in the terms of the run's limits where possible.

    pydantic-ai's own message speaks of the *remaining* budget this wrapper passed it, and ends
    with a pointer to its docs.
    """
    where = f" in step {scope.step_name!r}" if scope is not None else ""
    if scope is not None and scope.limits is not None:
        spent = Usage()
        spent.add(scope.run_usage)
        spent.add(scope.usage)
        spent.add(this_run)
        crossed = scope.limits.first_crossed(spent)
        if crossed is not None:
            return f"usage limit exceeded{where}: {crossed}"
    detail = str(exc)
    hint = getattr(UsageLimitExceeded, "_HINT", "")
    if hint and detail.endswith(hint):
        detail = detail[: -len(hint)].rstrip(" .")
    left = {
        "requests": budget.request_limit,
        "total_tokens": budget.total_tokens_limit,
        "cost_usd": budget.cost_limit,
    }
    described = ", ".join(f"{k}={v}" for k, v in left.items() if v is not None)
    return f"usage limit exceeded{where}: {detail} (budget left for this agent run: {described})"


# --------------------------------------------------------------------------- the wrapper


class AsyncAgentWrapper(Generic[OutputT]):
    """A pydantic-ai agent behind flujo's agent protocol. Build it with :func:`make_agent_async`.

    ``run(data, context=ctx)`` sends ``data`` to the model (as JSON text unless it is a ``str``),
    with ``ctx`` as pydantic-ai's ``deps`` so tools can take ``RunContext[YourContext]``, and
    returns the validated output. Inside a step the tool calls go through the step's policies
    and the usage counts towards the run; outside one (e.g. in a unit test) it is a plain agent
    with pydantic-ai's default request limit.
    """

    input_type: Any = None
    """Any input is accepted: it becomes the user prompt."""

    def __init__(
        self,
        agent: Agent[Any, OutputT],
        *,
        output_type: Any,
        timeout_s: float | None,
        name: str | None,
    ) -> None:
        self._agent = agent
        self.output_type: Any = output_type
        """The output type the model's answer is validated against."""
        self.timeout_s = timeout_s
        """The limit on one ``run``, in seconds (``None``: no limit)."""
        self.name = name
        """The agent's name, used in errors and by pydantic-ai's instrumentation."""

    def check_ready(self, where: str) -> None:
        """Build the model as a run would, without calling it.

        The runner calls this when it starts, so a provider that cannot be built (a missing
        API key, a provider setting) is a :class:`ConfigError` before any run is stored,
        rather than a failed run. Model objects (not strings) are the caller's own and are
        taken as they are.
        """
        model = self._agent.model
        if not isinstance(model, str) or model == "test":
            return
        try:
            infer_model(model)
        except PydanticAIUserError as exc:
            raise ConfigError(f"agent {self.name or where!r}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - each provider SDK has its own error types
            # e.g. openai's OpenAIError for an empty OPENAI_API_KEY: still the user's config.
            raise ConfigError(
                f"agent {self.name or where!r}: {type(exc).__name__}: {exc}"
            ) from None

    @property
    def agent(self) -> Agent[Any, OutputT]:
        """The underlying pydantic-ai ``Agent``, e.g. to ``override(model=...)`` it in a test."""
        return self._agent

    def __repr__(self) -> str:
        return f"AsyncAgentWrapper(name={self.name!r}, output_type={self.output_type!r})"

    async def run(self, data: Any, *, context: PipelineContext | None = None) -> OutputT:
        """Run the agent on ``data`` and return its validated output.

        :raises PolicyViolation: a policy denied one of the model's tool calls (the tool did
            not run).
        :raises UsageLimitExceededError: the run's usage limits would be crossed.
        :raises StepFailedError: the output did not validate after the retries, or the model
            misbehaved or its API failed.
        :raises StepTimeoutError: the run took longer than ``timeout_s``.
        :raises ConfigError: the model is misconfigured (e.g. a missing API key).
        """
        scope = current_step_scope()
        where = scope.step_name if scope is not None else (self.name or "agent")
        prompt: str | None = data if isinstance(data, str) else pydantic_core.to_json(data).decode()
        history: list[ModelMessage] | None = None
        deferred: DeferredToolResults | None = None
        approved: dict[str, str] | None = None
        # Whatever the policies of this runner: the pause and its answer are in the run (a
        # runner without the policy that paused must not ask the model from the start again).
        if scope is not None:
            resumed = _resume_point(scope)
            if resumed is not None:
                prompt = None
                history, deferred, approved = resumed
        # Our own usage object: pydantic-ai adds to it as the run goes, so what a failed run
        # spent is still known when it raises.
        usage = RunUsage()
        budget = _remaining_limits(scope)
        inspected = _INSPECTED.set(set())
        answered = _APPROVED.set(approved)
        try:
            result = await self._agent.run(
                prompt,
                output_type=self._output_spec(scope),
                message_history=history,
                deferred_tool_results=deferred,
                deps=context,
                usage=usage,
                usage_limits=budget,
                timeout=self.timeout_s,
                infer_name=False,
            )
        except UsageLimitExceeded as exc:
            message = _limit_message(exc, scope, budget, _flujo_usage(usage))
            raise UsageLimitExceededError(message) from exc
        except RunTimedOut as exc:
            if self.timeout_s is None:
                # The deadline was inherited from an enclosing agent run (a tool running this).
                raise StepFailedError(where, f"model run timed out: {exc}") from exc
            raise StepTimeoutError(where, self.timeout_s) from exc
        except UnexpectedModelBehavior as exc:
            details = _validation_details(exc)
            message = f"{exc.message}: {details}" if details else exc.message
            raise StepFailedError(where, f"invalid model output ({message})") from exc
        except AgentRunError as exc:
            raise StepFailedError(where, f"model run failed: {exc}") from exc
        except PydanticAIUserError as exc:
            raise ConfigError(f"agent {self.name or where!r}: {exc}") from exc
        finally:
            _APPROVED.reset(answered)
            _INSPECTED.reset(inspected)
            record_usage(_flujo_usage(usage))
        output: Any = result.output
        if isinstance(output, DeferredToolRequests):
            assert scope is not None  # only a step with policies asks for approvals
            _pause(
                scope,
                output,
                ModelMessagesTypeAdapter.dump_python(result.all_messages(), mode="json"),
            )
        return output  # type: ignore[no-any-return]

    def _output_spec(self, scope: StepScope | None) -> Any:
        """The output type of this run: the agent's, plus pydantic-ai's
        ``DeferredToolRequests`` when policies run (a call a policy wants approved ends the run
        with the calls waiting instead of an output)."""
        if scope is None or scope.gate is None:
            return None
        spec = self.output_type
        return (
            [*spec, DeferredToolRequests]
            if isinstance(spec, list)
            else [
                spec,
                DeferredToolRequests,
            ]
        )


def _resume_point(
    scope: StepScope,
) -> tuple[list[ModelMessage], DeferredToolResults, dict[str, str]] | None:
    """Where an agent paused for an approval in an earlier attempt of this step resumes: its
    stored message history and the person's answer as pydantic-ai's deferred results (and the
    fingerprints of the approved calls); ``None`` when the step did not pause.

    Still unanswered, the step pauses again at once (the model is not asked again: it could
    make another call); expired, it fails."""
    from flujo.application.control_flow import paused_call

    found = paused_call(scope.step_name)
    if found is None:
        return None
    pending, answer = found
    if answer is None:
        if (at := expired(pending)) is not None:
            raise InnerStepFailed(
                StepStatus.FAILED.value,
                f"the approval of the tool call at step {scope.step_name!r} expired "
                f"unanswered at {_iso(at)}",
            )
        raise InnerStepFailed(StepStatus.PAUSED.value, _waiting(scope, pending), pending)
    history = ModelMessagesTypeAdapter.validate_python(pending["messages"])
    results = DeferredToolResults()
    approved: dict[str, str] = {}
    for call in pending["calls"]:
        call_id = str(call["tool_call_id"])
        if answer["decision"] == "approved":
            results.approvals[call_id] = True
            approved[call_id] = call_fingerprint(str(call["tool"]), call["args"])
        else:
            reason = answer.get("reason") or "no reason given"
            results.approvals[call_id] = ToolDenied(f"A person refused this tool call: {reason}")
    return history, results, approved


def _iso(at: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="seconds")


def _waiting(scope: StepScope, pending: Mapping[str, Any]) -> str:
    calls = pending.get("calls") or []
    tools = ", ".join(repr(str(c.get("tool"))) for c in calls if isinstance(c, Mapping))
    expires = pending.get("expires_at")
    until = f", expires {_iso(float(expires))}" if isinstance(expires, int | float) else ""
    return (
        f"waiting for a person to approve tool call {tools} at step {scope.step_name!r}{until}: "
        f"answer with `flujo runs approve {scope.run_id}` or "
        f"`flujo runs reject {scope.run_id} --reason TEXT`"
    )


def _pause(scope: StepScope, requests: DeferredToolRequests, messages: list[Any]) -> None:
    """Pause the step: raise the record of the calls waiting for a person (stored as the
    step's output, scrubbed like any) with the history to resume the agent from."""
    if requests.calls:
        names = ", ".join(repr(c.tool_name) for c in requests.calls)
        raise InnerStepFailed(
            StepStatus.FAILED.value,
            f"tool {names} deferred its call (CallDeferred): flujo runs no external tool calls",
        )
    calls: list[dict[str, Any]] = []
    policies: list[str] = []
    expiries: list[float] = []
    for part in requests.approvals:
        meta = requests.metadata.get(part.tool_call_id) or {}
        if "args" not in meta or "tool" not in meta:
            # Not deferred by the policy guard (e.g. a tool of its own marked
            # requires_approval): flujo has no policy's word to bind the approval to.
            raise InnerStepFailed(
                StepStatus.FAILED.value,
                f"tool {part.tool_name!r} asked for approval outside flujo's policies; "
                "have a policy ask for it (ToolApprovalRequired)",
            )
        calls.append(
            {
                "tool": meta["tool"],
                "tool_call_id": part.tool_call_id,
                "args": meta["args"],
                "reason": meta.get("reason"),
            }
        )
        if meta.get("policy") not in policies:
            policies.append(str(meta.get("policy")))
        if isinstance(meta.get("expires_in_s"), int | float):
            expiries.append(float(meta["expires_in_s"]))
    record = pending_record(
        calls, messages, policies, expiry_at(min(expiries) if expiries else None)
    )
    raise InnerStepFailed(StepStatus.PAUSED.value, _waiting(scope, record), record)


def _check_model(model: Model | str) -> None:
    """Reject a model string whose provider is unknown or not installed, at construction.

    The model itself is built at each run (``defer_model_check``), so the provider reads
    ``OPENAI_BASE_URL``/``OPENAI_API_KEY`` and friends when the agent runs, not when the
    pipeline module is imported.
    """
    if not isinstance(model, str):
        if not isinstance(model, Model):
            raise PipelineDefinitionError(
                f"model must be a 'provider:model' string or a pydantic-ai Model, got {model!r}"
            )
        return
    if model == "test":
        return
    provider, name = parse_model_id(model)
    if provider is None or not name:
        raise ConfigError(
            f"model {model!r}: expected 'provider:model-name', e.g. 'openai:gpt-4o-mini'"
        )
    try:
        infer_provider_class(provider)
    except ValueError:
        raise ConfigError(f"model {model!r}: unknown provider {provider!r}") from None
    except ImportError as exc:
        raise ConfigError(f"model {model!r}: {_install_hint(provider, exc)}") from None


# The pydantic-ai extras flujo-core re-exports as its own: name ours, so users install the
# package they depend on (pydantic-ai's own message names pydantic-ai-slim's extra).
_CORE_EXTRAS = frozenset({"openai"})


def _install_hint(provider: str, exc: ImportError) -> str:
    found = re.search(r"pydantic-ai-slim\[([\w-]+)\]", str(exc))
    if found is None or found.group(1) not in _CORE_EXTRAS:
        return str(exc)
    extra = found.group(1)
    return (
        f"the {provider!r} provider needs flujo-core's {extra!r} extra: "
        f'pip install "flujo-core[{extra}]"'
    )


@overload
def make_agent_async(
    model: Model | str,
    system_prompt: str,
    *,
    tools: Sequence[ToolSpec] = (),
    retries: int = 1,
    timeout_s: float | None = None,
    config: FlujoConfig | None = None,
    name: str | None = None,
) -> AsyncAgentWrapper[str]: ...


@overload
def make_agent_async(
    model: Model | str,
    system_prompt: str,
    output_type: type[OutputT],
    *,
    tools: Sequence[ToolSpec] = (),
    retries: int = 1,
    timeout_s: float | None = None,
    config: FlujoConfig | None = None,
    name: str | None = None,
) -> AsyncAgentWrapper[OutputT]: ...


@overload
def make_agent_async(
    model: Model | str,
    system_prompt: str,
    output_type: Any,
    *,
    tools: Sequence[ToolSpec] = (),
    retries: int = 1,
    timeout_s: float | None = None,
    config: FlujoConfig | None = None,
    name: str | None = None,
) -> AsyncAgentWrapper[Any]: ...


def make_agent_async(
    model: Model | str,
    system_prompt: str,
    output_type: Any = str,
    *,
    tools: Sequence[ToolSpec] = (),
    retries: int = 1,
    timeout_s: float | None = None,
    config: FlujoConfig | None = None,
    name: str | None = None,
) -> AsyncAgentWrapper[Any]:
    """Build an LLM agent for a pipeline step.

    :param model: a provider string (``"openai:gpt-4o-mini"`` speaks OpenAI's Responses API,
        ``"openai-chat:..."`` chat completions, ``"anthropic:..."``, ...) or a pydantic-ai
        ``Model``. OpenAI-compatible servers work through ``OPENAI_BASE_URL``; the provider is
        created, and reads its environment, each time the agent runs.
    :param system_prompt: the instructions the model gets with every request.
    :param output_type: what the answer is validated as (``str``, a pydantic model, ...; any
        pydantic-ai output spec).
    :param tools: functions (sync or async; taking ``RunContext[YourContext]`` first to see the
        pipeline context), pydantic-ai ``Tool`` objects, or ids of tools registered by plugins
        through ``flujo_register_tools``.
    :param retries: how often the model may retry an invalid output or tool call within one
        run (the step's ``max_retries`` re-runs the whole agent on top of this).
    :param timeout_s: the limit on one agent run, in seconds.
    :param config: the configuration whose plugins provide tool ids (default: this folder's,
        loaded once per process when a tool id is given and shared with a runner given no
        config, see :func:`flujo.config.shared_config`).
    :param name: the agent's name, for errors and instrumentation.
    :raises ConfigError: an unknown tool id or model provider.
    :raises PipelineDefinitionError: invalid arguments, e.g. two tools with one name.
    """
    if retries < 0:
        raise PipelineDefinitionError("make_agent_async: retries must be >= 0")
    if timeout_s is not None and timeout_s <= 0:
        raise PipelineDefinitionError("make_agent_async: timeout_s must be > 0")
    _check_model(model)
    resolved, registered = _resolve_tools(tools, config)
    try:
        functions = FunctionToolset(resolved)
        toolsets = [_PolicyGuardedToolset(functions, registered)] if resolved else []
        agent: Agent[Any, Any] = Agent(
            model,
            output_type=output_type,
            instructions=system_prompt,
            name=name,
            retries=retries,
            toolsets=toolsets,
            capabilities=[_PolicyGuard(registered)],
            defer_model_check=True,
        )
    except PydanticAIUserError as exc:
        raise PipelineDefinitionError(f"agent {name or model!r}: {exc}") from exc
    return AsyncAgentWrapper(agent, output_type=output_type, timeout_s=timeout_s, name=name)
