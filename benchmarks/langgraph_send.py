"""LangGraph's ``Send`` fan-out, the baseline ``control_flow.py`` prints beside its figures.

A module of its own, without ``from __future__ import annotations``: LangGraph reads the
state's and the nodes' annotations at runtime, and string annotations naming classes local to
a function cannot be resolved (they made the baseline fail with a ``NameError``).
"""

import importlib.util
import operator
import statistics
import time
from typing import Annotated, TypedDict


class _State(TypedDict):
    results: Annotated[list[int], operator.add]


def us_per_send(branches: int, runs: int) -> float | None:
    """Median µs per ``Send`` of one in-memory fan-out to ``branches`` no-op nodes (not
    durable: no checkpointer), or ``None`` when ``langgraph`` is not installed."""
    if importlib.util.find_spec("langgraph") is None:
        return None
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    def fan(state: _State) -> list[Send]:
        return [Send("work", {"results": [i]}) for i in range(branches)]

    def work(state: _State) -> dict[str, list[int]]:
        return {"results": []}

    graph = StateGraph(_State)
    graph.add_node("work", work)
    graph.add_conditional_edges(START, fan, ["work"])
    graph.add_edge("work", END)
    app = graph.compile()
    app.invoke({"results": []})
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        app.invoke({"results": []})
        samples.append((time.perf_counter() - t0) / branches * 1e6)
    return statistics.median(samples)
