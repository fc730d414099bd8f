"""Deterministic stand-ins for LLMs, for tests and plugin authors.

:func:`scripted_model` plays a fixed script, one turn per model request::

    from flujo.testing.models import call_tool, scripted_model

    model = scripted_model(
        call_tool("lookup", city="Paris"),   # 1st request: the model calls a tool
        {"city": "Paris", "temp": 21},       # 2nd request: the structured output
    )
    agent = make_agent_async(model, "You report the weather.", Weather, tools=[lookup])

A turn is one of:

- a ``str``: the model answers with that text;
- a :class:`ToolCall` (see :func:`call_tool`), or a list of them: the model calls those tools
  (a list means parallel calls in one response);
- any other JSON value (a ``dict``, a pydantic model instance, a number, a list, ...): a
  structured output. It is sent as a call of the agent's output tool when the agent has one
  (non-object values wrapped as ``{"response": value}``, as pydantic-ai expects), otherwise as
  JSON text;
- a pydantic-ai ``ModelResponse``: sent as it is, for anything the shorthands cannot say.

Every response reports the same token usage (``input_tokens``/``output_tokens``), so tests can
assert on usage exactly. :attr:`ScriptedModel.requests` records what the model was sent.

:func:`fixed_model` is a thin wrapper around pydantic-ai's ``TestModel``, which calls tools with
arguments generated from their schemas; handy to check that tools are wired up at all.

The same :class:`ToolCall` replies drive :class:`flujo.testing.fake_openai.FakeOpenAIServer` when a
test needs the real HTTP provider code.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pydantic_core
from pydantic import BaseModel
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.usage import RequestUsage

from .fake_openai import ToolCall, call_tool

__all__ = [
    "ScriptExhausted",
    "ScriptedModel",
    "ScriptedRequest",
    "ToolCall",
    "Turn",
    "call_tool",
    "fixed_model",
    "scripted_model",
]

Turn = Any
"""One scripted model response: ``str`` text, a :class:`ToolCall` or a list of them, a
structured output value, or a ``ModelResponse`` (see the module documentation)."""


class ScriptExhausted(AssertionError):
    """The model was asked for more responses than its script has turns.

    An ``AssertionError``: it means the test's script and the agent's behaviour disagree.
    """


@dataclass(frozen=True, slots=True)
class ScriptedRequest:
    """What a :class:`ScriptedModel` was sent for one response."""

    messages: list[ModelMessage]
    """The conversation so far, as pydantic-ai sent it."""
    info: AgentInfo
    """The tools, output tools and settings of the request."""

    @property
    def user_prompt(self) -> str | None:
        """The text of the latest user prompt in :attr:`messages` (``None`` if there is none)."""
        for message in reversed(self.messages):
            if isinstance(message, ModelRequest):
                for part in reversed(message.parts):
                    if isinstance(part, UserPromptPart):
                        content = part.content
                        return content if isinstance(content, str) else str(content)
        return None

    @property
    def tool_returns(self) -> dict[str, Any]:
        """``{tool_name: returned content}`` for the tool results in the latest request."""
        if not self.messages or not isinstance(self.messages[-1], ModelRequest):
            return {}
        return {
            part.tool_name: part.content
            for part in self.messages[-1].parts
            if isinstance(part, ToolReturnPart)
        }

    @property
    def tool_names(self) -> list[str]:
        """Names of the (non-output) tools the model was offered."""
        return [tool.name for tool in self.info.function_tools]


class ScriptedModel(FunctionModel):
    """A pydantic-ai ``FunctionModel`` that answers each request with the next scripted turn.

    Build it with :func:`scripted_model`. One instance plays one script: use a fresh one per test
    (and do not share it between concurrent runs, whose requests would interleave).
    """

    def __init__(
        self,
        turns: Sequence[Turn],
        *,
        input_tokens: int = 10,
        output_tokens: int = 5,
        model_name: str = "scripted",
    ) -> None:
        self._turns: deque[Turn] = deque(turns)
        self._total = len(self._turns)
        self._call_ids = itertools.count(1)
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.requests: list[ScriptedRequest] = []
        """Every request the model received, in order."""
        super().__init__(self._respond, model_name=model_name)

    @property
    def pending(self) -> int:
        """How many scripted turns have not been played yet."""
        return len(self._turns)

    async def _respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.requests.append(ScriptedRequest(list(messages), info))
        if not self._turns:
            raise ScriptExhausted(
                f"scripted model {self.model_name!r} got request #{len(self.requests)} but its "
                f"script has only {self._total} turn(s)"
            )
        turn = self._turns.popleft()
        usage = RequestUsage(input_tokens=self.input_tokens, output_tokens=self.output_tokens)
        if isinstance(turn, ModelResponse):
            if not turn.usage.has_values():
                turn.usage = usage
            return turn
        return ModelResponse(parts=self._parts(turn, info), usage=usage)

    def _tool_call(self, name: str, args: Any) -> ToolCallPart:
        return ToolCallPart(name, dict(args), tool_call_id=f"scripted-call-{next(self._call_ids)}")

    def _parts(self, turn: Turn, info: AgentInfo) -> list[ModelResponsePart]:
        if isinstance(turn, str):
            return [TextPart(turn)]
        if isinstance(turn, ToolCall):
            return [self._tool_call(turn.name, turn.args)]
        if isinstance(turn, Sequence) and turn and all(isinstance(item, ToolCall) for item in turn):
            return [self._tool_call(call.name, call.args) for call in turn]
        value = turn.model_dump(mode="json") if isinstance(turn, BaseModel) else turn
        if info.output_tools:
            args = value if isinstance(value, dict) else {"response": value}
            return [self._tool_call(info.output_tools[0].name, args)]
        return [TextPart(pydantic_core.to_json(value).decode())]


def scripted_model(
    *turns: Turn,
    input_tokens: int = 10,
    output_tokens: int = 5,
    model_name: str = "scripted",
) -> ScriptedModel:
    """A model that answers request *n* with ``turns[n]`` and reports fixed token usage.

    See the module documentation for what a turn can be. Asking for more responses than there
    are turns raises :class:`ScriptExhausted`.

    :param input_tokens: prompt tokens every response reports.
    :param output_tokens: completion tokens every response reports.
    :param model_name: the model name pydantic-ai records.
    """
    return ScriptedModel(
        turns, input_tokens=input_tokens, output_tokens=output_tokens, model_name=model_name
    )


def fixed_model(
    output: Any = None,
    *,
    call_tools: Sequence[str] | Literal["all"] = (),
) -> TestModel:
    """pydantic-ai's ``TestModel``: calls ``call_tools`` once, then answers ``output``.

    Tool arguments are generated from each tool's JSON schema. ``output`` is the final text
    (a ``str``) or the structured output's arguments (anything else); ``None`` lets
    ``TestModel`` generate one. Usage is estimated from the messages.
    """
    return TestModel(
        call_tools=call_tools if call_tools == "all" else list(call_tools),
        custom_output_text=output if isinstance(output, str) else None,
        custom_output_args=None if output is None or isinstance(output, str) else output,
    )
