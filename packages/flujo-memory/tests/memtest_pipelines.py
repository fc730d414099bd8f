"""Pipelines the tests run (importable by subprocesses too)."""

from __future__ import annotations

import os
import signal

from flujo import Pipeline, PipelineContext, Step


class TenantContext(PipelineContext):
    """A context whose ``tenant`` and ``user`` make up the memory scope."""

    tenant: str = ""
    user: str = ""


async def learn(text: str, context: TenantContext) -> str:
    """Turn the input into a fact worth remembering."""
    return f"fact: {text}"


async def recall(fact: str, context: TenantContext) -> list[str]:
    """What memory says about the fact's topic."""
    hits = await context.retrieve(fact.removeprefix("fact: "), limit=3)
    return [h.memory.text for h in hits]


async def crash(fact: str, context: TenantContext) -> str:
    """Die hard, right after the previous step succeeded and was persisted."""
    os.kill(os.getpid(), signal.SIGKILL)
    return fact


learn_and_recall = Pipeline(
    [Step.from_callable(learn, name="learn"), Step.from_callable(recall, name="recall")]
)
learn_then_crash = Pipeline(
    [Step.from_callable(learn, name="learn"), Step.from_callable(crash, name="crash")]
)
recall_only = Pipeline([Step.from_callable(recall, name="recall")])
learn_only = Pipeline([Step.from_callable(learn, name="learn")])
