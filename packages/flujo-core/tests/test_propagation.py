"""Headers of outgoing calls: providers follow the context, bad answers are left out."""

from __future__ import annotations

import asyncio

from flujo.plugin import outgoing_headers, providing_headers


def test_outside_any_provider_there_are_no_headers() -> None:
    assert outgoing_headers() == {}


def test_providers_nest_and_are_asked_at_call_time() -> None:
    state = {"n": 0}

    def counter() -> dict[str, str]:
        state["n"] += 1
        return {"tracestate": f"n={state['n']}"}

    with providing_headers(lambda: {"traceparent": "00-a-b-01", "tracestate": "n=0"}):
        with providing_headers(counter):
            assert outgoing_headers() == {"traceparent": "00-a-b-01", "tracestate": "n=1"}
            assert outgoing_headers()["tracestate"] == "n=2"
        assert outgoing_headers() == {"traceparent": "00-a-b-01", "tracestate": "n=0"}
    assert outgoing_headers() == {}


def test_only_trace_context_passes_and_a_failing_provider_is_left_out() -> None:
    """A provider cannot set credentials, baggage (application data) or smuggle a header."""

    def broken() -> dict[str, str]:
        raise RuntimeError("tracer gone")

    bad = {
        "TraceParent": "00-a-b-01",
        "tracestate": "a=1\r\nSet-Cookie: s=1",
        "Authorization": "Bearer forged",
        "baggage": "user=ana@example.com",
        "x-ctl": "\x00",
    }
    with providing_headers(broken), providing_headers(lambda: bad):
        assert outgoing_headers() == {"traceparent": "00-a-b-01"}


async def test_providers_follow_the_task_and_do_not_leak_to_others() -> None:
    seen: dict[str, dict[str, str]] = {}
    ready = asyncio.Event()

    async def inside() -> None:
        with providing_headers(lambda: {"traceparent": "00-t-s-01"}):
            child = asyncio.create_task(asyncio.sleep(0, result=outgoing_headers()))
            seen["child"] = await child
            ready.set()
            await asyncio.sleep(0)

    async def outside() -> None:
        await ready.wait()
        seen["other"] = outgoing_headers()

    await asyncio.gather(inside(), outside())
    assert seen == {"child": {"traceparent": "00-t-s-01"}, "other": {}}
