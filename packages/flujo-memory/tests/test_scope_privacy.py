"""Scope values a policy flags never reach the store: they are kept as keyed fingerprints, so
the same customer still matches across runs, customers never share a scope, and searching and
forgetting by the real value still work. Checked through the store itself (every memory it
holds), the outbox and the state database, on the default embedded store."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memtest_pipelines import TenantContext, learn_only, recall_only

from flujo import Flujo, PipelineContext, PolicyDecision
from flujo.application.scrubbing import FINGERPRINT_KEY_ENV
from flujo_memory.service import MemoryService

ANA = "ana.lópez@example.com"
BOB = "bob@example.org"
_EMAIL = re.compile(r"[^\s\"@]+@[^\s\"@]+\.[a-z]+")


class MaskEmails:
    """A stand-in for a PII policy (flujo-memory's tests run without flujo-governance):
    e-mail addresses never leave the process."""

    name = "mask"

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        return PolicyDecision.ALLOW

    def scrub(self, context: PipelineContext, value: Any) -> Any:
        return json.loads(_EMAIL.sub("<EMAIL>", json.dumps(value, ensure_ascii=False)))


def _assert_no_email(where: str, text: str) -> None:
    for email in (ANA, BOB):
        assert email not in text, f"{email!r} stored in {where}"


async def test_flagged_scope_values_are_stored_as_fingerprints_and_still_match(
    tmp_path: Path, config_file: Callable[..., Path], monkeypatch: Any
) -> None:
    monkeypatch.delenv(FINGERPRINT_KEY_ENV, raising=False)
    cfg = config_file(index_steps=["learn"], scope_fields=["tenant", "user"])
    ana = {"tenant": "acme", "user": ANA}
    bob = {"tenant": "acme", "user": BOB}
    async with Flujo(
        learn_only, config=cfg, context_model=TenantContext, policies=[MaskEmails()]
    ) as runner:
        await runner.run_async("ana likes ships", context=ana)
        await runner.run_async("bob likes trains", context=bob)
    async with Flujo(
        recall_only, config=cfg, context_model=TenantContext, policies=[MaskEmails()]
    ) as runner:
        await runner.start()
        service: MemoryService = runner.services["memory"]
        # A later run of the same customer finds its memory; the other customer's never.
        again = await runner.run_async("likes", context=ana)
        other = await runner.run_async("likes", context=bob)
        stored = await service.get_store().scan()
        # Searching by the real value (what `flujo memory search --scope` does) works.
        found = await service.search("likes", scope=ana)
        forgotten = await service.forget(scope={"user": ANA})
        left = await service.get_store().scan()
    assert again.output == ["fact: ana likes ships"]
    assert other.output == ["fact: bob likes trains"]
    assert [h.memory.text for h in found] == ["fact: ana likes ships"]
    # Through the store: every memory it holds, every field.
    assert len(stored) == 2
    for memory in stored:
        _assert_no_email("the store", json.dumps([memory.text, memory.scope, memory.metadata]))
        assert memory.metadata["scope.user"].startswith("fp:")
        assert memory.metadata["scope.tenant"] == "acme"  # not flagged: kept as it is
    assert len({m.metadata["scope.user"] for m in stored}) == 2  # no shared scope
    assert forgotten.store == 1
    assert [m.text for m in left] == ["fact: bob likes trains"]
    # The state database (outbox rows included) and every file of the embedded store.
    for path in (tmp_path / ".flujo").rglob("*"):
        if path.is_file() and path.name != "fingerprint.key":
            _assert_no_email(str(path), path.read_bytes().decode("utf-8", "replace"))
    assert (tmp_path / ".flujo" / "fingerprint.key").stat().st_mode & 0o077 == 0


async def test_the_fingerprint_key_comes_from_the_environment_when_set(
    tmp_path: Path, config_file: Callable[..., Path], monkeypatch: Any
) -> None:
    monkeypatch.setenv(FINGERPRINT_KEY_ENV, "k" * 32)
    cfg = config_file(index_steps=["learn"], scope_fields=["user"])
    async with Flujo(
        learn_only, config=cfg, context_model=TenantContext, policies=[MaskEmails()]
    ) as runner:
        await runner.run_async("ana likes ships", context={"user": ANA})
        service: MemoryService = runner.services["memory"]
        await service.flush()
        [memory] = await service.get_store().scan()
    assert not (tmp_path / ".flujo" / "fingerprint.key").exists()
    assert memory.metadata["scope.user"].startswith("fp:")
    monkeypatch.setenv(FINGERPRINT_KEY_ENV, "another key, long enough")
    async with Flujo(
        recall_only, config=cfg, context_model=TenantContext, policies=[MaskEmails()]
    ) as runner:
        # Another key: the same customer no longer matches what the old key stored.
        assert (await runner.run_async("likes", context={"user": ANA})).output == []
