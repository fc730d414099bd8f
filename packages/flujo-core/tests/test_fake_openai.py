"""The fake OpenAI server, and agents that reach it over real HTTP through pydantic-ai's providers.

``openai:`` models speak the Responses API and ``openai-chat:`` models chat completions; both go
through the real OpenAI SDK and pydantic-ai's provider code to :class:`FakeOpenAIServer`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from flujo import (
    ConfigError,
    Flujo,
    FlujoConfig,
    Pipeline,
    PipelineContext,
    PolicyDecision,
    RunStatus,
    Step,
    make_agent_async,
)
from flujo.state.sqlite import SQLiteBackend
from flujo.testing.fake_openai import FakeOpenAIServer, call_tool, openai_env


class Weather(BaseModel):
    city: str
    temp_c: int


class DenyTools:
    name = "deny_tools"

    def __init__(self, *deny: str) -> None:
        self.deny = set(deny)
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        self.seen.append((tool_name, args))
        return PolicyDecision.DENY if tool_name in self.deny else PolicyDecision.ALLOW


def weather_tool(ran: list[str]) -> Any:
    def lookup_weather(city: str) -> str:
        """Current weather for a city."""
        ran.append(city)
        return f"{city}: 21C"

    return lookup_weather


async def run_one(
    agent: Any, data: Any, *, state: SQLiteBackend, config: FlujoConfig, policies: Any = ()
) -> Any:
    async with Flujo(
        Pipeline([Step("ask", agent)]), config=config, state=state, policies=policies
    ) as runner:
        return await runner.run_async(data)


# --------------------------------------------------------------------------- over HTTP


async def test_openai_responses_model_with_a_tool_call(
    fake_openai: FakeOpenAIServer, state: SQLiteBackend, config: FlujoConfig
) -> None:
    ran: list[str] = []
    fake_openai.queue(call_tool("lookup_weather", city="Paris"), "Paris is 21C and sunny.")
    agent = make_agent_async("openai:gpt-4o-mini", "Report the weather.", tools=[weather_tool(ran)])
    policy = DenyTools()

    result = await run_one(
        agent, "Weather in Paris?", state=state, config=config, policies=[policy]
    )

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "Paris is 21C and sunny."
    assert ran == ["Paris"]
    assert policy.seen == [("lookup_weather", {"city": "Paris"})]
    first, second = fake_openai.requests
    assert first.path == second.path == "/v1/responses"
    assert first.body["instructions"] == "Report the weather."
    assert first.body["input"] == [{"role": "user", "content": "Weather in Paris?"}]
    assert [t["name"] for t in first.body["tools"]] == ["lookup_weather"]
    assert first.headers["authorization"] == "Bearer test"
    # The tool's result went back to the server as a function_call_output item.
    outputs = [i for i in second.body["input"] if i.get("type") == "function_call_output"]
    assert [o["output"] for o in outputs] == ["Paris: 21C"]
    usage = result.steps[0].usage
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (2, 20, 10)
    assert usage.cost_usd > 0  # pydantic-ai prices gpt-4o-mini from the reported tokens
    assert result.usage.to_dict() == usage.to_dict()


async def test_openai_chat_model_with_a_tool_call_and_structured_output(
    fake_openai: FakeOpenAIServer, state: SQLiteBackend, config: FlujoConfig
) -> None:
    ran: list[str] = []
    fake_openai.queue(call_tool("lookup_weather", city="Oslo"), {"city": "Oslo", "temp_c": -3})
    agent = make_agent_async(
        "openai-chat:gpt-4o-mini", "Report the weather.", Weather, tools=[weather_tool(ran)]
    )

    result = await run_one(agent, {"city": "Oslo"}, state=state, config=config)

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == Weather(city="Oslo", temp_c=-3)
    assert ran == ["Oslo"]
    first, second = fake_openai.requests
    assert first.path == second.path == "/v1/chat/completions"
    assert first.body["messages"][0] == {"role": "system", "content": "Report the weather."}
    assert first.body["messages"][-1] == {"role": "user", "content": '{"city":"Oslo"}'}
    tool_names = [t["function"]["name"] for t in first.body["tools"]]
    assert tool_names == ["lookup_weather", "final_result"]
    tool_messages = [m for m in second.body["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ["Oslo: 21C"]
    assert result.usage.requests == 2
    assert result.usage.total_tokens == 30


@pytest.mark.parametrize("model", ["openai:gpt-4o-mini", "openai-chat:gpt-4o-mini"])
async def test_denied_tool_over_http_never_runs(
    model: str, fake_openai: FakeOpenAIServer, state: SQLiteBackend, config: FlujoConfig
) -> None:
    ran: list[str] = []
    fake_openai.queue(call_tool("lookup_weather", city="Rome"), "unreachable")
    agent = make_agent_async(model, "Report the weather.", tools=[weather_tool(ran)])

    result = await run_one(
        agent, "Rome?", state=state, config=config, policies=[DenyTools("lookup_weather")]
    )

    assert result.status is RunStatus.BLOCKED
    assert ran == []
    assert len(fake_openai.requests) == 1
    assert fake_openai.pending == 1
    assert result.usage.requests == 1


async def test_the_provider_is_created_when_the_agent_runs(
    monkeypatch: pytest.MonkeyPatch, state: SQLiteBackend, config: FlujoConfig
) -> None:
    # Built before any OpenAI variable exists, as a module-level pipeline would be.
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    agent = make_agent_async("openai:gpt-4o-mini", "Answer.")
    with FakeOpenAIServer(["hello"]) as server:
        for key, value in openai_env(server).items():
            monkeypatch.setenv(key, value)
        result = await run_one(agent, "hi", state=state, config=config)

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "hello"
    assert [r.path for r in server.requests] == ["/v1/responses"]


async def test_a_server_error_fails_the_step_with_the_api_message(
    fake_openai: FakeOpenAIServer, state: SQLiteBackend, config: FlujoConfig
) -> None:
    agent = make_agent_async("openai-chat:gpt-4o-mini", "Answer.")

    result = await run_one(agent, "hi", state=state, config=config)  # nothing queued

    assert result.status is RunStatus.FAILED
    assert "StepFailedError" in (result.error or "")
    assert "no reply queued for request #1" in (result.error or "")


async def test_a_missing_api_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    agent = make_agent_async("openai:gpt-4o-mini", "Answer.", name="helper")

    with pytest.raises(ConfigError, match="agent 'helper': Set the `OPENAI_API_KEY`"):
        await agent.run("hi")


# --------------------------------------------------------------------------- the server itself


def test_server_answers_chat_completions_and_records_requests() -> None:
    with FakeOpenAIServer(["hi there", call_tool("f", x=1)], input_tokens=3) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert server.base_url.endswith("/v1")
        text = httpx.post(
            f"{server.base_url}/chat/completions", json={"model": "m", "messages": []}
        ).json()
        call = httpx.post(
            f"{server.base_url}/chat/completions", json={"model": "m", "messages": []}
        ).json()

    assert text["object"] == "chat.completion"
    assert text["choices"][0]["message"]["content"] == "hi there"
    assert text["choices"][0]["finish_reason"] == "stop"
    assert text["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    [tool_call] = call["choices"][0]["message"]["tool_calls"]
    assert tool_call["function"] == {"name": "f", "arguments": '{"x": 1}'}
    assert call["choices"][0]["finish_reason"] == "tool_calls"
    assert [(r.method, r.path, r.body) for r in server.requests] == [
        ("POST", "/v1/chat/completions", {"model": "m", "messages": []}),
    ] * 2


def test_server_answers_responses_with_structured_output() -> None:
    output_tool = {"type": "function", "name": "final_result", "parameters": {}}
    with FakeOpenAIServer() as server:
        server.queue({"a": 1}, [1, 2])
        as_tool = httpx.post(
            f"{server.base_url}/responses", json={"model": "m", "input": [], "tools": [output_tool]}
        ).json()
        as_text = httpx.post(f"{server.base_url}/responses", json={"model": "m", "input": []})

    [item] = as_tool["output"]
    assert item["type"] == "function_call"
    assert (item["name"], json.loads(item["arguments"])) == ("final_result", {"a": 1})
    assert as_tool["status"] == "completed"
    assert as_tool["usage"]["total_tokens"] == 15
    [message] = as_text.json()["output"]
    assert message["content"][0] == {"type": "output_text", "text": "[1, 2]", "annotations": []}


def test_server_errors_are_openai_style_json() -> None:
    with FakeOpenAIServer() as server:
        missing = httpx.get(f"{server.base_url}/models")
        unknown = httpx.post(f"{server.base_url}/embeddings", json={"input": "x"})
        stream = httpx.post(f"{server.base_url}/chat/completions", json={"stream": True})
        empty = httpx.post(f"{server.base_url}/responses", json={"model": "m"})

    assert missing.status_code == unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert stream.status_code == 400
    assert "streaming" in stream.json()["error"]["message"]
    assert empty.status_code == 400
    assert "no reply queued for request #4" in empty.json()["error"]["message"]
    assert len(server.requests) == 4


def test_openai_env_and_stopped_server() -> None:
    server = FakeOpenAIServer()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url
    with server:
        assert openai_env(server) == {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "test"}
    server.stop()  # idempotent
