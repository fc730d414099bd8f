"""A fake OpenAI-compatible HTTP server on loopback, for tests that exercise real provider code.

Point any OpenAI client at it (``OPENAI_BASE_URL=server.base_url``) and it answers, in order,
with the replies you queued. It speaks both APIs pydantic-ai uses:

- ``POST /v1/chat/completions``: the chat completions API (pydantic-ai ``openai-chat:`` models);
- ``POST /v1/responses``: the Responses API (pydantic-ai ``openai:`` models).

Replies are API-neutral, so one script serves both:

- a ``str`` is an assistant text message;
- a :class:`ToolCall` (made with :func:`call_tool`), or a list of them, asks the client to call
  tools;
- any other JSON value (a ``dict``, a list, a number, ...) is a *structured output*: when the
  request offers pydantic-ai's output tool (a tool whose name starts with ``final_result``) it is
  sent as a call of that tool (wrapped as ``{"response": value}`` when it is not an object, as
  pydantic-ai expects for non-object output types); otherwise it is sent as JSON text (what the
  native and prompted output modes expect).

Every answer reports token usage (``input_tokens``/``output_tokens`` per reply, fixed so tests
can assert on them). Streaming is not supported: a ``"stream": true`` request gets a 400. A
request that arrives with no reply queued gets a 400 naming the request, which a client does not
retry. Unknown paths get a 404 with an OpenAI-style JSON error.

This module uses only the standard library, so importing it stays cheap.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeAlias

__all__ = [
    "FakeOpenAIServer",
    "RecordedRequest",
    "Reply",
    "ToolCall",
    "call_tool",
    "openai_env",
]

OUTPUT_TOOL_PREFIX = "final_result"
"""pydantic-ai names the tools it uses for structured output ``final_result`` (or
``final_result_<Type>`` when there are several)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A model's request to call tool ``name`` with ``args``.

    Understood both by :class:`FakeOpenAIServer` and by :func:`flujo.testing.models.scripted_model`.
    """

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)


def call_tool(name: str, /, **args: Any) -> ToolCall:
    """A scripted turn in which the model calls tool ``name`` with keyword ``args``."""
    return ToolCall(name, dict(args))


Reply: TypeAlias = "str | ToolCall | Sequence[ToolCall] | Any"
"""What a fake model says in one turn: text, one or more tool calls, or a structured output."""


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    body: Any
    """The decoded JSON body (``None`` when there was none)."""
    headers: dict[str, str]


def openai_env(server: FakeOpenAIServer) -> dict[str, str]:
    """The environment variables that point OpenAI clients (and pydantic-ai) at ``server``."""
    return {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "test"}


class _ReplyError(Exception):
    """A request the fake cannot answer; becomes an HTTP error with an OpenAI-style body."""

    def __init__(self, status: int, message: str, *, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
"""What OpenAI accepts as a function tool's name (``^[a-zA-Z0-9_-]{1,64}$``)."""


def _check_tool_names(tools: list[dict[str, Any]], where: str) -> None:
    """Refuse a request offering a tool whose name OpenAI would refuse, as OpenAI does."""
    for i, tool in enumerate(tools):
        name = tool.get("name")
        if name is not None and not (isinstance(name, str) and _TOOL_NAME.fullmatch(name)):
            raise _ReplyError(
                400,
                f"Invalid '{where.format(i)}': string does not match pattern. Expected a "
                "string that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.",
                code="invalid_value",
            )


def _is_tool_calls(reply: Any) -> bool:
    return (
        isinstance(reply, Sequence)
        and not isinstance(reply, str | bytes)
        and len(reply) > 0
        and all(isinstance(item, ToolCall) for item in reply)
    )


class FakeOpenAIServer:
    """An OpenAI-compatible server on ``127.0.0.1`` (a free port), answering scripted replies.

    Use it as a context manager; the server runs on a background thread while inside::

        replies = [call_tool("lookup", city="Paris"), "It is sunny."]
        with FakeOpenAIServer(replies) as server:
            os.environ.update(openai_env(server))
            ...  # run an agent on "openai:gpt-4o-mini" or "openai-chat:gpt-4o-mini"
            assert server.requests[0].path == "/v1/responses"

    :param replies: the replies to give, in order; add more later with :meth:`queue`.
    :param input_tokens: the prompt tokens every answer reports.
    :param output_tokens: the completion tokens every answer reports.
    """

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        input_tokens: int = 10,
        output_tokens: int = 5,
    ) -> None:
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.requests: list[RecordedRequest] = []
        """Every request received, in order (including ones answered with an error)."""
        self._replies: deque[Reply] = deque(replies)
        # Handler threads append and pop concurrently; one lock keeps the order of requests and
        # replies consistent with each other.
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: the value for ``OPENAI_BASE_URL``."""
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not running; use it as a context manager")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> FakeOpenAIServer:
        """Start serving on a background thread (``with`` does this for you)."""
        if self._httpd is not None:
            return self
        server = self

        class Handler(_Handler):
            fake = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            # A short poll interval: stop() waits for the serving loop to notice the shutdown.
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port (``with`` does this for you). Idempotent."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ script

    def queue(self, *replies: Reply) -> None:
        """Append replies to give after the ones already queued."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def pending(self) -> int:
        """How many queued replies have not been given yet."""
        with self._lock:
            return len(self._replies)

    # ------------------------------------------------------------------ answering

    def _record(self, request: RecordedRequest) -> int:
        with self._lock:
            self.requests.append(request)
            return len(self.requests)

    def _next_reply(self, number: int, path: str) -> Reply:
        with self._lock:
            if not self._replies:
                raise _ReplyError(
                    400,
                    f"FakeOpenAIServer: no reply queued for request #{number} ({path}); "
                    "queue one with server.queue(...)",
                    code="no_reply_queued",
                )
            return self._replies.popleft()

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"

    def _usage_chat(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }

    def _usage_responses(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + self.output_tokens,
        }

    def answer(self, path: str, body: Any, number: int) -> dict[str, Any]:
        """The JSON answer to request ``number`` on ``path``; raises for requests it refuses."""
        if not isinstance(body, dict):
            raise _ReplyError(400, "the request body must be a JSON object")
        if body.get("stream"):
            raise _ReplyError(400, "FakeOpenAIServer does not support streaming")
        if path == "/v1/chat/completions":
            return self._chat_completion(body, self._next_reply(number, path))
        if path == "/v1/responses":
            return self._response(body, self._next_reply(number, path))
        raise _ReplyError(404, f"unknown path {path!r}", code="not_found")

    def _chat_completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        tools = [t.get("function", {}) for t in body.get("tools") or () if isinstance(t, dict)]
        _check_tool_names(tools, "tools[{}].function.name")
        calls = _as_tool_calls(reply, tools)
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if calls is None:
            message["content"] = _as_text(reply)
            finish = "stop"
        else:
            message["tool_calls"] = [
                {
                    "id": self._new_id("call"),
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(dict(c.args))},
                }
                for c in calls
            ]
            finish = "tool_calls"
        return {
            "id": self._new_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model", "fake")),
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": self._usage_chat(),
        }

    def _response(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
        _check_tool_names(tools, "tools[{}].name")
        calls = _as_tool_calls(reply, tools)
        output: list[dict[str, Any]]
        if calls is None:
            output = [
                {
                    "type": "message",
                    "id": self._new_id("msg"),
                    "role": "assistant",
                    "status": "completed",
                    "content": [
                        {"type": "output_text", "text": _as_text(reply), "annotations": []}
                    ],
                }
            ]
        else:
            output = [
                {
                    "type": "function_call",
                    "id": self._new_id("fc"),
                    "call_id": self._new_id("call"),
                    "name": c.name,
                    "arguments": json.dumps(dict(c.args)),
                    "status": "completed",
                }
                for c in calls
            ]
        now = time.time()
        return {
            "id": self._new_id("resp"),
            "object": "response",
            "created_at": now,
            "completed_at": now,
            "status": "completed",
            "model": str(body.get("model", "fake")),
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": [],
            "usage": self._usage_responses(),
        }


def _as_text(reply: Reply) -> str:
    return reply if isinstance(reply, str) else json.dumps(reply)


def _as_tool_calls(reply: Reply, tools: list[dict[str, Any]]) -> list[ToolCall] | None:
    """The tool calls ``reply`` stands for, or ``None`` when it is a text answer."""
    if isinstance(reply, ToolCall):
        return [reply]
    if _is_tool_calls(reply):
        return list(reply)
    if isinstance(reply, str):
        return None
    output_tool = next(
        (t for t in tools if str(t.get("name", "")).startswith(OUTPUT_TOOL_PREFIX)), None
    )
    if output_tool is None:
        return None
    if isinstance(reply, Mapping):
        return [ToolCall(str(output_tool["name"]), dict(reply))]
    # pydantic-ai wraps a non-object output type (int, list, ...) in {"response": value}.
    return [ToolCall(str(output_tool["name"]), {"response": reply})]


class _Handler(BaseHTTPRequestHandler):
    """Routes one HTTP request to its :class:`FakeOpenAIServer`."""

    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"  # keep-alive, as the OpenAI client expects

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _send(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self._read_body()
        number = self.fake._record(
            RecordedRequest(
                self.command, path, body, {k.lower(): v for k, v in self.headers.items()}
            )
        )
        try:
            if self.command != "POST":
                raise _ReplyError(404, f"unknown path {self.command} {path!r}", code="not_found")
            payload = self.fake.answer(path, body, number)
        except _ReplyError as exc:
            error = {"message": exc.message, "type": "invalid_request_error", "code": exc.code}
            self._send(exc.status, {"error": error})
            return
        self._send(200, payload)

    do_POST = _handle
    do_GET = _handle
    do_PUT = _handle
    do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: the recorded requests are the log tests look at.
        return
