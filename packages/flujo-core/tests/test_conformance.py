"""The conformance suites pass for small reference implementations and catch broken ones.

The reference implementations below run through every suite in this session. To prove each
suite *catches* bugs, deliberately broken variants run through the suites in an inner pytest
session (``pytester``, in pytest-asyncio's strict mode, as a plugin author's project might be
configured), and each broken variant must fail exactly the checks that describe its bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import os
import re
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest

from flujo.domain.context import PipelineContext
from flujo.domain.errors import PolicyViolation
from flujo.domain.interfaces import (
    EvaluationResult,
    ExecutionResult,
    Memory,
    PolicyDecision,
    SandboxLimits,
    ScoredMemory,
)
from flujo.domain.models import RunRecord, RunStatus
from flujo.testing.conformance import (
    EmbedderConformance,
    EvaluatorConformance,
    GovernancePolicyConformance,
    SandboxConformance,
    VectorStoreConformance,
    make_run_record,
)

pytest_plugins = ["pytester"]

# =========================================================================== references


class DenyWordPolicy:
    """Reference policy (sync): denies inputs containing a word, and calls of listed tools."""

    name = "deny_words"

    def __init__(self, word: str = "secret", forbidden_tools: Sequence[str] = ("shell",)) -> None:
        self.word = word
        self.forbidden_tools = tuple(forbidden_tools)

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        if isinstance(data, str) and self.word in data.lower():
            return PolicyDecision.DENY, data
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        return PolicyDecision.DENY if tool_name in self.forbidden_tools else PolicyDecision.ALLOW


class EmailRedactPolicy:
    """Reference policy (async): redacts e-mail addresses in inputs and outputs, and refuses
    the ``delete_all`` tool by raising ``PolicyViolation``."""

    name = "redact_emails"
    pattern = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")

    async def inspect_input(
        self, context: PipelineContext, data: Any
    ) -> tuple[PolicyDecision, Any]:
        if isinstance(data, str) and self.pattern.search(data):
            return PolicyDecision.REDACT, self.pattern.sub("[EMAIL]", data)
        return PolicyDecision.ALLOW, data

    async def inspect_output(
        self, context: PipelineContext, output: Any
    ) -> tuple[PolicyDecision, Any]:
        return await self.inspect_input(context, output)

    async def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        if tool_name == "delete_all":
            raise PolicyViolation(self.name, "destructive tool", where="tool_call")
        return PolicyDecision.ALLOW


class ExactMemoryStore:
    """Reference vector store: exact cosine search over a dict, in pure Python."""

    CORE_KEYS = ("scope", "run_id", "step_name")

    def __init__(self) -> None:
        self._items: dict[str, Memory] = {}

    @staticmethod
    def copy_of(memory: Memory) -> Memory:
        vector = None if memory.vector is None else list(memory.vector)
        return replace(memory, vector=vector, metadata=dict(memory.metadata))

    @classmethod
    def matches(cls, memory: Memory, flt: Mapping[str, Any] | None) -> bool:
        for key, want in (flt or {}).items():
            have = getattr(memory, key) if key in cls.CORE_KEYS else memory.metadata.get(key)
            if have != want or type(have) is not type(want):
                return False
        return True

    @staticmethod
    def cosine(a: Sequence[float], b: Sequence[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        return dot / norm if norm else 0.0

    async def add(self, memories: Sequence[Memory]) -> None:
        for memory in memories:
            self._items[memory.id] = self.copy_of(memory)

    async def search(
        self, query_vector: Sequence[float], limit: int, *, filter: Mapping[str, Any] | None = None
    ) -> list[ScoredMemory]:
        scored = [
            ScoredMemory(self.copy_of(m), self.cosine(query_vector, m.vector or []))
            for m in self._items.values()
            if self.matches(m, filter)
        ]
        scored.sort(key=lambda s: s.score, reverse=True)
        return scored[:limit]

    async def delete(
        self, *, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        doomed = [
            key
            for key, m in self._items.items()
            if (ids is None or m.id in ids) and self.matches(m, filter)
        ]
        for key in doomed:
            del self._items[key]
        return len(doomed)


class SubprocessSandbox:
    """Reference sandbox -- UNSAFE: runs the code in a plain subprocess of this Python.

    Each execution gets a fresh temporary working directory, and that is all: the code can
    read and write anything the test process can, and reach the network. Fine as a reference
    in a test; never use it for untrusted code. It enforces ``output_bytes`` and the timeout
    (on the code's whole process group) only, so it declares ``enforced_limits`` empty and
    raises when asked for ``memory_mb``, ``cpu_s`` or ``pids``.
    """

    backend = "subprocess"
    default_timeout_s = 30.0
    enforced_limits: frozenset[str] = frozenset()

    def _refuse(self, limits: SandboxLimits | None) -> None:
        for name in ("memory_mb", "cpu_s", "pids"):
            if limits is not None and getattr(limits, name) is not None:
                raise ValueError(f"{self.backend} cannot enforce {name}")

    async def _stop(self, proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
        """Kill the code's whole process group after a timeout; its output is dropped."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return b"", b""

    def _workdir(self) -> contextlib.AbstractContextManager[str]:
        return tempfile.TemporaryDirectory(prefix="flujo-sandbox-")

    def _stderr(self) -> int:
        return asyncio.subprocess.PIPE

    def _timeout(self, timeout_s: float | None) -> float:
        return timeout_s if timeout_s is not None else self.default_timeout_s

    @staticmethod
    def _cut(data: bytes, limit: int | None) -> tuple[bytes, bool]:
        if limit is not None and len(data) > limit:
            return data[:limit], True
        return data, False

    async def exec_code(
        self,
        code: str,
        lang: str = "python",
        *,
        files: Mapping[str, bytes] | None = None,
        timeout_s: float | None = None,
        limits: SandboxLimits | None = None,
    ) -> ExecutionResult:
        if lang != "python":
            raise ValueError(f"{self.backend} runs python only, not {lang!r}")
        self._refuse(limits)
        started = time.perf_counter()
        with self._workdir() as cwd:
            for name, content in (files or {}).items():
                path = os.path.join(cwd, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as fh:
                    fh.write(content)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-X", "utf8", "-c", code,
                cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=self._stderr(),
                start_new_session=True,
            )  # fmt: skip
            timed_out = False
            try:
                out, err = await asyncio.wait_for(proc.communicate(), self._timeout(timeout_s))
            except TimeoutError:
                out, err = await self._stop(proc)
                timed_out = True
            except BaseException:
                await self._stop(proc)
                raise
        limit = limits.output_bytes if limits is not None else None
        out, cut_out = self._cut(out, limit)
        err, cut_err = self._cut(err or b"", limit)
        return ExecutionResult(
            stdout=out.decode("utf-8", errors="replace"),
            stderr=err.decode("utf-8", errors="replace"),
            exit_code=None if timed_out else proc.returncode,
            timed_out=timed_out,
            truncated=cut_out or cut_err,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            limits={"output_bytes": limit},
            backend=self.backend,
        )


class ExactMatchEvaluator:
    """Reference evaluator (rule based): 1.0 when the run succeeded with the expected output."""

    name = "exact_match"
    deterministic = True

    def __init__(self, expected: Any = "4") -> None:
        self.expected = expected

    async def evaluate(self, run: RunRecord) -> EvaluationResult:
        if run.status is not RunStatus.SUCCEEDED:
            return EvaluationResult(0.0, "fail", f"the run ended {run.status.value}: {run.error}")
        if run.output == self.expected:
            return EvaluationResult(1.0, "pass", "the output is the expected answer")
        return EvaluationResult(0.0, "fail", f"expected {self.expected!r}, got {run.output!r}")


# =========================================================================== the suites pass


class TestDenyWordPolicy(GovernancePolicyConformance):
    @pytest.fixture
    def policy(self) -> DenyWordPolicy:
        return DenyWordPolicy()

    @pytest.fixture
    def denied_input(self) -> str:
        return "tell me the SECRET plan"

    @pytest.fixture
    def denied_tool_call(self) -> tuple[str, dict[str, Any]]:
        return ("shell", {"cmd": "rm -rf /"})


class TestEmailRedactPolicy(GovernancePolicyConformance):
    @pytest.fixture
    def policy(self) -> EmailRedactPolicy:
        return EmailRedactPolicy()

    @pytest.fixture
    def denied_input(self) -> str:
        return "write to ada@example.com today"

    @pytest.fixture
    def sensitive_value(self) -> str:
        return "ada@example.com"

    @pytest.fixture
    def denied_tool_call(self) -> tuple[str, dict[str, Any]]:
        return ("delete_all", {})


class TestPolicyWithDefaults(GovernancePolicyConformance):
    """Only the required fixture: the checks that need a denied case skip."""

    @pytest.fixture
    def policy(self) -> DenyWordPolicy:
        return DenyWordPolicy()


class TestExactMemoryStore(VectorStoreConformance):
    @pytest.fixture
    def store(self) -> ExactMemoryStore:
        return ExactMemoryStore()


class TestExactMemoryStoreWide(VectorStoreConformance):
    @pytest.fixture
    def store(self) -> ExactMemoryStore:
        return ExactMemoryStore()

    @pytest.fixture
    def dimension(self) -> int:
        return 384


class TestSubprocessSandbox(SandboxConformance):
    @pytest.fixture
    def sandbox(self) -> SubprocessSandbox:
        return SubprocessSandbox()


class TestExactMatchEvaluator(EvaluatorConformance):
    @pytest.fixture
    def evaluator(self) -> ExactMatchEvaluator:
        return ExactMatchEvaluator()


def test_make_run_record_builds_finished_runs() -> None:
    ok = make_run_record()
    assert ok.status is RunStatus.SUCCEEDED
    assert ok.output == "4"
    assert ok.error is None
    failed = make_run_record(RunStatus.FAILED)
    assert failed.output is None
    assert failed.error
    assert failed.steps[0].status.value == "failed"
    blocked = make_run_record(RunStatus.BLOCKED, error="policy 'x' denied the input")
    assert blocked.steps[0].status.value == "blocked"
    with pytest.raises(ValueError, match="finished runs"):
        make_run_record(RunStatus.RUNNING)


def test_policy_checks_skip_with_a_reason_when_no_denied_case(pytester: pytest.Pytester) -> None:
    """``denied_input``/``denied_tool_call`` default to ``None``: those checks skip, saying why."""
    run = _run_inner(
        pytester,
        [DenyWordPolicy],
        """
        class TestDefaults(GovernancePolicyConformance):
            @pytest.fixture
            def policy(self):
                return DenyWordPolicy()
        """,
        "-rs",
    )
    assert _with(run.outcomes["TestDefaults"], "skipped") == {
        "test_denied_input_is_denied_or_redacted",
        "test_denied_tool_call_is_denied",
        "test_blocks_a_real_run",
        "test_inspect_output_has_the_input_shape",
        # No `scrub`: the scrub/restore checks do not apply.
        "test_scrub_removes_the_sensitive_value_wherever_it_sits",
        "test_scrub_keeps_clean_data_and_is_deterministic",
        "test_nothing_stored_or_observed_holds_the_sensitive_value_whatever_its_type",
        "test_the_caller_gets_the_output_restored_or_scrubbed",
    }
    assert _with(run.outcomes["TestDefaults"], "failed", "error") == set()
    run.result.stdout.fnmatch_lines(["*the `denied_input` fixture is None*"])


# =========================================================================== inner sessions

INNER_HEADER = """
from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest

from flujo.domain.context import PipelineContext
from flujo.domain.errors import PolicyViolation
from flujo.domain.interfaces import (
    EvaluationResult,
    ExecutionResult,
    Memory,
    PolicyDecision,
    SandboxLimits,
    ScoredMemory,
)
from flujo.domain.models import RunRecord, RunStatus
from flujo.testing.conformance import (
    EmbedderConformance,
    EvaluatorConformance,
    GovernancePolicyConformance,
    SandboxConformance,
    VectorStoreConformance,
)
"""

STRICT_INI = """
[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
"""


class _InnerRun:
    """Outcomes of an inner pytest session: ``outcomes[class][test] = passed|failed|...``."""

    def __init__(self, result: pytest.RunResult, outcomes: dict[str, dict[str, str]]) -> None:
        self.result = result
        self.outcomes = outcomes


def _run_inner(
    pytester: pytest.Pytester, objects: Sequence[type], body: str, *args: str
) -> _InnerRun:
    """Run ``body`` (suite subclasses) with the source of ``objects`` in strict asyncio mode."""
    parts = [INNER_HEADER]
    parts += [textwrap.dedent(inspect.getsource(obj)) for obj in objects]
    parts.append(textwrap.dedent(body))
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_inner="\n\n".join(parts))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)
    outcomes: dict[str, dict[str, str]] = {}
    for rep in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        _, cls, test = rep.nodeid.split("::")
        if rep.when == "call":
            outcomes.setdefault(cls, {})[test] = rep.outcome
        elif rep.failed:
            outcomes.setdefault(cls, {})[test] = "error"
        elif rep.when == "setup" and rep.skipped:
            outcomes.setdefault(cls, {})[test] = "skipped"
    return _InnerRun(result, outcomes)


def _with(outcomes: Mapping[str, str], *kinds: str) -> set[str]:
    return {test for test, outcome in outcomes.items() if outcome in kinds}


def _failed(run: _InnerRun, cls: str) -> set[str]:
    assert cls in run.outcomes, f"{cls} did not run: {run.result.stdout.str()}"
    return _with(run.outcomes[cls], "failed", "error")


# =========================================================================== broken policies


class NamelessPolicy(DenyWordPolicy):
    """Broken: an empty name."""

    name = ""


class LeakyRedactPolicy(DenyWordPolicy):
    """Broken: says REDACT but passes the sensitive data on untouched."""

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        decision, data = super().inspect_input(context, data)
        return (PolicyDecision.REDACT if decision is PolicyDecision.DENY else decision), data


class NormalizingPolicy(DenyWordPolicy):
    """Broken: ALLOW, but hands on a changed (lower-cased) input."""

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        decision, data = super().inspect_input(context, data)
        return decision, data.lower() if isinstance(data, str) else data


class TupleToolPolicy(DenyWordPolicy):
    """Broken: ``inspect_tool_call`` returns a tuple like ``inspect_input``."""

    def inspect_tool_call(  # type: ignore[override]
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> tuple[PolicyDecision, Any]:
        return super().inspect_tool_call(context, tool_name, args), args


class RedactingToolPolicy(DenyWordPolicy):
    """Broken: answers REDACT for a tool call it means to refuse."""

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        decision = super().inspect_tool_call(context, tool_name, args)
        return PolicyDecision.REDACT if decision is PolicyDecision.DENY else decision


class FlipFlopPolicy(DenyWordPolicy):
    """Broken: denies a bad input only every other time it sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        decision, data = super().inspect_input(context, data)
        if decision is PolicyDecision.DENY:
            self.calls += 1
            if self.calls % 2 == 0:
                return PolicyDecision.ALLOW, data
        return decision, data


class BareOutputPolicy(DenyWordPolicy):
    """Broken: ``inspect_output`` returns a bare decision instead of ``(decision, output)``."""

    def inspect_output(self, context: PipelineContext, output: Any) -> PolicyDecision:
        return PolicyDecision.ALLOW


def test_governance_suite_catches_broken_policies(pytester: pytest.Pytester) -> None:
    brokens = [
        NamelessPolicy,
        LeakyRedactPolicy,
        NormalizingPolicy,
        TupleToolPolicy,
        RedactingToolPolicy,
        FlipFlopPolicy,
        BareOutputPolicy,
    ]
    body = "\n".join(
        f"""
class Test{cls.__name__}(GovernancePolicyConformance):
    @pytest.fixture
    def policy(self):
        return {cls.__name__}()

    @pytest.fixture
    def allowed_input(self):
        return "Hello"

    @pytest.fixture
    def denied_input(self):
        return "the secret plan"

    @pytest.fixture
    def denied_tool_call(self):
        return ("shell", {{"cmd": "ls"}})
"""
        for cls in [DenyWordPolicy, *brokens]
    )
    run = _run_inner(pytester, [DenyWordPolicy, *brokens], body)
    assert _failed(run, "TestDenyWordPolicy") == set()
    assert _failed(run, "TestNamelessPolicy") == {"test_has_a_name"}
    assert _failed(run, "TestLeakyRedactPolicy") == {
        "test_denied_input_is_denied_or_redacted",
        "test_blocks_a_real_run",
    }
    assert _failed(run, "TestNormalizingPolicy") == {
        "test_allowed_input_passes_unchanged",
        "test_allows_a_real_run",
    }
    assert _failed(run, "TestTupleToolPolicy") == {
        "test_inspect_tool_call_returns_a_decision",
        "test_denied_tool_call_is_denied",
    }
    assert _failed(run, "TestRedactingToolPolicy") == {"test_denied_tool_call_is_denied"}
    assert _failed(run, "TestFlipFlopPolicy") == {"test_decisions_are_deterministic"}
    # The end-to-end run catches it too: the coordinator cannot unpack the bare decision.
    assert _failed(run, "TestBareOutputPolicy") == {
        "test_inspect_output_has_the_input_shape",
        "test_allows_a_real_run",
    }


class MaskingPolicy(DenyWordPolicy):
    """Reference scrubbing policy: ``scrub`` masks the card number ``4111111111111111`` in any
    JSON data, as text or as a number, keys included."""

    card = "4111111111111111"

    def scrub(self, context: PipelineContext, value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(self.card, "<CARD>")
        if isinstance(value, int) and not isinstance(value, bool) and str(value) == self.card:
            return "<CARD>"
        if isinstance(value, dict):
            return {self.scrub(context, k): self.scrub(context, v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(context, v) for v in value]
        return value


class TopLevelScrubPolicy(MaskingPolicy):
    """Broken: scrubs a top-level string only (nested data and numbers leak)."""

    def scrub(self, context: PipelineContext, value: Any) -> Any:
        return value.replace(self.card, "<CARD>") if isinstance(value, str) else value


class TextOnlyScrubPolicy(MaskingPolicy):
    """Broken: walks the data but never looks at numbers."""

    def scrub(self, context: PipelineContext, value: Any) -> Any:
        if isinstance(value, int):
            return value
        return super().scrub(context, value)


class SwappingRestorePolicy(MaskingPolicy):
    """Broken: ``restore`` makes up a value for clean output."""

    def restore(self, context: PipelineContext, output: Any) -> Any:
        return f"{output}!"


def test_governance_suite_holds_scrubbing_policies_to_the_runners_bar(
    pytester: pytest.Pytester,
) -> None:
    policies = [MaskingPolicy, TopLevelScrubPolicy, TextOnlyScrubPolicy, SwappingRestorePolicy]
    body = "\n".join(
        f"""
class Test{cls.__name__}(GovernancePolicyConformance):
    @pytest.fixture
    def policy(self):
        return {cls.__name__}()

    @pytest.fixture
    def denied_input(self):
        return "the secret card 4111111111111111"

    @pytest.fixture
    def sensitive_value(self):
        return "4111111111111111"

    @pytest.fixture
    def sensitive_number(self):
        return 4111111111111111
"""
        for cls in policies
    )
    run = _run_inner(pytester, [DenyWordPolicy, *policies], body)
    assert _failed(run, "TestMaskingPolicy") == set()
    assert _failed(run, "TestTopLevelScrubPolicy") == {
        "test_scrub_removes_the_sensitive_value_wherever_it_sits",
        "test_nothing_stored_or_observed_holds_the_sensitive_value_whatever_its_type",
    }
    assert _failed(run, "TestTextOnlyScrubPolicy") == {
        "test_scrub_removes_the_sensitive_value_wherever_it_sits",
        "test_nothing_stored_or_observed_holds_the_sensitive_value_whatever_its_type",
    }
    assert _failed(run, "TestSwappingRestorePolicy") == {
        "test_the_caller_gets_the_output_restored_or_scrubbed"
    }


# =========================================================================== broken stores


class PostFilterStore(ExactMemoryStore):
    """Broken: takes the top ``limit`` first and filters afterwards."""

    async def search(
        self, query_vector: Sequence[float], limit: int, *, filter: Mapping[str, Any] | None = None
    ) -> list[ScoredMemory]:
        top = await super().search(query_vector, limit)
        return [s for s in top if self.matches(s.memory, filter)]


class AppendingStore(ExactMemoryStore):
    """Broken: ``add`` appends, so re-adding an id duplicates it."""

    async def add(self, memories: Sequence[Memory]) -> None:
        for memory in memories:
            self._items[f"{memory.id}#{len(self._items)}"] = self.copy_of(memory)


class LostUpdateStore(ExactMemoryStore):
    """Broken: read-modify-write across an await, so concurrent adds overwrite each other."""

    async def add(self, memories: Sequence[Memory]) -> None:
        snapshot = dict(self._items)
        await asyncio.sleep(0)  # stands for an I/O round trip (not synchronization)
        snapshot.update({m.id: self.copy_of(m) for m in memories})
        self._items = snapshot


class DistanceScoreStore(ExactMemoryStore):
    """Broken: right order, but reports a distance (lower is closer) as the score."""

    async def search(
        self, query_vector: Sequence[float], limit: int, *, filter: Mapping[str, Any] | None = None
    ) -> list[ScoredMemory]:
        found = await super().search(query_vector, limit, filter=filter)
        return [ScoredMemory(s.memory, 1.0 - s.score) for s in found]


class OverCountingStore(ExactMemoryStore):
    """Broken: ``delete(ids=...)`` reports how many ids it was given, not how many it deleted."""

    async def delete(
        self, *, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        deleted = await super().delete(ids=ids, filter=filter)
        return len(ids) if ids is not None else deleted


class StringifyingStore(ExactMemoryStore):
    """Broken: keeps metadata values as strings (as some stores do)."""

    async def add(self, memories: Sequence[Memory]) -> None:
        await super().add(
            [replace(m, metadata={k: str(v) for k, v in m.metadata.items()}) for m in memories]
        )


def test_vector_store_suite_catches_broken_stores(pytester: pytest.Pytester) -> None:
    brokens = [
        PostFilterStore,
        AppendingStore,
        LostUpdateStore,
        DistanceScoreStore,
        OverCountingStore,
        StringifyingStore,
    ]
    body = "\n".join(
        f"""
class Test{cls.__name__}(VectorStoreConformance):
    @pytest.fixture
    def store(self):
        return {cls.__name__}()
"""
        for cls in [ExactMemoryStore, *brokens]
    )
    run = _run_inner(pytester, [ExactMemoryStore, *brokens], body)
    assert _failed(run, "TestExactMemoryStore") == set()
    assert _failed(run, "TestPostFilterStore") == {
        "test_filter_by_scope_is_applied_before_limit",
        "test_filter_by_run_id_and_step_name",
        "test_filter_by_metadata",
    }
    assert _failed(run, "TestAppendingStore") == {"test_add_is_an_upsert_on_id"}
    assert _failed(run, "TestLostUpdateStore") == {"test_concurrent_adds_do_not_lose_data"}
    every_multi_result_check = {
        "test_search_returns_closest_first",
        "test_search_respects_limit",
        "test_add_is_an_upsert_on_id",
        "test_filter_by_scope_is_applied_before_limit",
        "test_filter_by_run_id_and_step_name",
        "test_filter_by_metadata",
        "test_delete_by_ids",
        "test_delete_by_filter",
        "test_concurrent_adds_do_not_lose_data",
    }
    assert _failed(run, "TestDistanceScoreStore") == every_multi_result_check
    assert _failed(run, "TestOverCountingStore") == {"test_delete_by_ids"}
    assert _failed(run, "TestStringifyingStore") == {
        "test_add_is_an_upsert_on_id",
        "test_filter_by_metadata",
        "test_filter_matching_nothing_returns_empty_list",
        "test_delete_by_filter",
        "test_fields_round_trip",
    }


# =========================================================================== broken sandboxes


class MergedStreamsSandbox(SubprocessSandbox):
    """Broken: sends stderr into stdout."""

    def _stderr(self) -> int:
        return asyncio.subprocess.STDOUT


class RaisingSandbox(SubprocessSandbox):
    """Broken: raises when the code fails instead of reporting it."""

    async def exec_code(self, code: str, lang: str = "python", **kwargs: Any) -> ExecutionResult:
        result = await super().exec_code(code, lang, **kwargs)
        if result.exit_code:
            raise RuntimeError(f"code failed with exit code {result.exit_code}")
        return result


class TimeoutRaisingSandbox(SubprocessSandbox):
    """Broken: raises ``TimeoutError`` instead of reporting ``timed_out``."""

    async def exec_code(self, code: str, lang: str = "python", **kwargs: Any) -> ExecutionResult:
        result = await super().exec_code(code, lang, **kwargs)
        if result.timed_out:
            raise TimeoutError("the code timed out")
        return result


class SilentTimeoutSandbox(SubprocessSandbox):
    """Broken: stops code at the timeout but does not say it timed out."""

    async def exec_code(self, code: str, lang: str = "python", **kwargs: Any) -> ExecutionResult:
        result = await super().exec_code(code, lang, **kwargs)
        result.timed_out = False
        result.exit_code = 0 if result.exit_code is None else result.exit_code
        return result


class UnlimitedOutputSandbox(SubprocessSandbox):
    """Broken: ignores ``limits.output_bytes``."""

    @staticmethod
    def _cut(data: bytes, limit: int | None) -> tuple[bytes, bool]:
        return data, False


class SharedDirSandbox(SubprocessSandbox):
    """Broken: every execution runs in the same working directory."""

    def __init__(self) -> None:
        # Inside the (temporary) working directory of the test run, so nothing is left behind.
        self._shared = tempfile.mkdtemp(prefix="flujo-shared-", dir=os.getcwd())

    @contextlib.contextmanager
    def _workdir(self) -> Iterator[str]:
        yield self._shared


class StatefulSandbox(SharedDirSandbox):
    """Shares its working directory on purpose, and says so."""

    stateful = True


class NamelessBackendSandbox(SubprocessSandbox):
    """Broken: does not say which backend ran the code."""

    backend = ""


class UnlimitedSandbox(SubprocessSandbox):
    """Broken: declares every limit enforced but ignores them all (plain ``subprocess``, with
    network, memory, CPU and processes of the test process)."""

    enforced_limits = frozenset({"memory_mb", "cpu_s", "pids", "network"})

    def _refuse(self, limits: SandboxLimits | None) -> None:
        pass


class SilentlyUnlimitedSandbox(SubprocessSandbox):
    """Broken: declares it enforces no limit, yet runs code asked for one, unlimited."""

    def _refuse(self, limits: SandboxLimits | None) -> None:
        pass


class OrphaningSandbox(SubprocessSandbox):
    """Broken: at the timeout it kills only the process it started and keeps reading the
    output of that process's children, which run on."""

    async def _stop(self, proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
        proc.kill()
        out, err = await proc.communicate()
        return out, err or b""


def test_sandbox_suite_catches_broken_sandboxes(pytester: pytest.Pytester) -> None:
    brokens = [
        MergedStreamsSandbox,
        RaisingSandbox,
        TimeoutRaisingSandbox,
        SilentTimeoutSandbox,
        UnlimitedOutputSandbox,
        SharedDirSandbox,
        StatefulSandbox,
        NamelessBackendSandbox,
        UnlimitedSandbox,
        SilentlyUnlimitedSandbox,
        OrphaningSandbox,
    ]
    body = "\n".join(
        f"""
class Test{cls.__name__}(SandboxConformance):
    @pytest.fixture
    def sandbox(self):
        return {cls.__name__}()

    @pytest.fixture
    def sandbox_timeout_s(self):
        return 0.25
"""
        for cls in [SubprocessSandbox, *brokens]
    )
    run = _run_inner(pytester, [SubprocessSandbox, *brokens], body)
    assert _failed(run, "TestSubprocessSandbox") == set()
    assert _failed(run, "TestMergedStreamsSandbox") == {
        "test_stdout_and_stderr_are_captured_separately",
        "test_exception_is_a_result_not_a_raise",
    }
    assert _failed(run, "TestRaisingSandbox") == {
        "test_exit_code_is_propagated",
        "test_exception_is_a_result_not_a_raise",
    }
    assert _failed(run, "TestTimeoutRaisingSandbox") == {
        "test_timeout_stops_an_infinite_loop",
        "test_timeout_stops_the_codes_child_processes",
    }
    # The sandbox's own TimeoutError is reported as itself, not as the suite's guard firing.
    run.result.stdout.fnmatch_lines(["*TimeoutError: the code timed out*"])
    assert "did not return within" not in run.result.stdout.str()
    assert _failed(run, "TestSilentTimeoutSandbox") == {
        "test_timeout_stops_an_infinite_loop",
        "test_timeout_stops_the_codes_child_processes",
    }
    assert _failed(run, "TestUnlimitedOutputSandbox") == {"test_output_over_limit_is_truncated"}
    assert _failed(run, "TestSharedDirSandbox") == {"test_executions_do_not_share_files"}
    assert _failed(run, "TestStatefulSandbox") == set()
    assert run.outcomes["TestStatefulSandbox"]["test_executions_do_not_share_files"] == "skipped"
    assert _failed(run, "TestNamelessBackendSandbox") == {"test_successful_run_is_reported"}
    assert _failed(run, "TestUnlimitedSandbox") == {
        "test_network_is_denied",
        "test_memory_limit_is_enforced",
        "test_cpu_limit_is_enforced",
        "test_process_limit_is_enforced",
    }
    assert _failed(run, "TestSilentlyUnlimitedSandbox") == {"test_limits_it_cannot_enforce_raise"}
    assert _failed(run, "TestOrphaningSandbox") == {"test_timeout_stops_the_codes_child_processes"}
    # What the reference cannot enforce is skipped with a reason, never passed vacuously.
    assert _with(run.outcomes["TestSubprocessSandbox"], "skipped") == {
        "test_network_is_denied",
        "test_memory_limit_is_enforced",
        "test_cpu_limit_is_enforced",
        "test_process_limit_is_enforced",
    }


class HangingSandbox(SubprocessSandbox):
    """Broken: ignores ``timeout_s``; cancelling it still kills the child process."""

    def _timeout(self, timeout_s: float | None) -> float:
        return self.default_timeout_s


def test_sandbox_suite_fails_a_sandbox_that_ignores_its_timeout(
    pytester: pytest.Pytester,
) -> None:
    """A sandbox that never returns fails at ``sandbox_guard_s`` instead of hanging the run."""
    body = """
class TestHangingSandbox(SandboxConformance):
    @pytest.fixture
    def sandbox(self):
        return HangingSandbox()

    @pytest.fixture
    def sandbox_timeout_s(self):
        return 0.2

    @pytest.fixture
    def sandbox_guard_s(self):
        return 1.0
"""
    run = _run_inner(
        pytester, [SubprocessSandbox, HangingSandbox], body, "-k", "test_timeout_stops"
    )
    assert _failed(run, "TestHangingSandbox") == {
        "test_timeout_stops_an_infinite_loop",
        "test_timeout_stops_the_codes_child_processes",
    }
    run.result.stdout.fnmatch_lines(["*did not return within 1s (sandbox_guard_s)*"])


# =========================================================================== broken evaluators


class NamelessEvaluator(ExactMatchEvaluator):
    """Broken: an empty name."""

    name = ""


class TenPointEvaluator(ExactMatchEvaluator):
    """Broken: scores on a 0-10 scale."""

    deterministic = False

    async def evaluate(self, run: RunRecord) -> EvaluationResult:
        result = await super().evaluate(run)
        return replace(result, score=result.score * 10)


class CrashOnFailureEvaluator(ExactMatchEvaluator):
    """Broken: assumes every run has an output."""

    async def evaluate(self, run: RunRecord) -> EvaluationResult:
        words = run.output.split()
        return EvaluationResult(1.0 if words else 0.0, "pass", "has words")


class MutatingEvaluator(ExactMatchEvaluator):
    """Broken: trims the run's steps while looking at it."""

    async def evaluate(self, run: RunRecord) -> EvaluationResult:
        run.steps.clear()
        return await super().evaluate(run)


class FlakyEvaluator(ExactMatchEvaluator):
    """Broken: claims to be deterministic, but its score drifts."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def evaluate(self, run: RunRecord) -> EvaluationResult:
        self.calls += 1
        result = await super().evaluate(run)
        return replace(result, score=result.score / self.calls)


def test_evaluator_suite_catches_broken_evaluators(pytester: pytest.Pytester) -> None:
    brokens = [
        NamelessEvaluator,
        TenPointEvaluator,
        CrashOnFailureEvaluator,
        MutatingEvaluator,
        FlakyEvaluator,
    ]
    body = "\n".join(
        f"""
class Test{cls.__name__}(EvaluatorConformance):
    @pytest.fixture
    def evaluator(self):
        return {cls.__name__}()
"""
        for cls in [ExactMatchEvaluator, *brokens]
    )
    run = _run_inner(pytester, [ExactMatchEvaluator, *brokens], body)
    assert _failed(run, "TestExactMatchEvaluator") == set()
    assert _failed(run, "TestNamelessEvaluator") == {"test_has_a_name"}
    assert _failed(run, "TestTenPointEvaluator") == {"test_evaluate_returns_a_valid_result"}
    assert _failed(run, "TestCrashOnFailureEvaluator") == {"test_evaluates_a_failed_run"}
    assert _failed(run, "TestMutatingEvaluator") == {"test_does_not_modify_the_run"}
    assert _failed(run, "TestFlakyEvaluator") == {"test_deterministic_evaluator_repeats_itself"}
    skipped = _with(run.outcomes["TestTenPointEvaluator"], "skipped")
    assert skipped == {"test_deterministic_evaluator_repeats_itself"}


# =========================================================================== suite mechanics


def test_suites_are_not_collected_on_their_own(pytester: pytest.Pytester) -> None:
    """Importing a suite into a test module runs nothing: only subclasses named Test* run."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(test_imports=INNER_HEADER)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


@pytest.mark.parametrize(
    ("suite", "fixture"),
    [
        ("GovernancePolicyConformance", "policy"),
        ("VectorStoreConformance", "store"),
        ("SandboxConformance", "sandbox"),
        ("EvaluatorConformance", "evaluator"),
    ],
)
def test_missing_required_fixture_fails_with_a_clear_message(
    pytester: pytest.Pytester, suite: str, fixture: str
) -> None:
    run = _run_inner(pytester, [], f"class TestIncomplete({suite}):\n    pass\n")
    outcomes = run.outcomes["TestIncomplete"]
    assert outcomes
    assert set(outcomes.values()) <= {"error", "skipped"}
    assert "error" in set(outcomes.values())
    run.result.stdout.fnmatch_lines([f"*TestIncomplete must define a*`{fixture}` fixture*"])


# =========================================================================== embedders


class WordCountEmbedder:
    """Reference embedder: letter counts of each text (a-z, then one bucket for the rest)."""

    dimension = 27

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            v = [0.0] * self.dimension
            for ch in text.lower():
                v[ord(ch) - 97 if "a" <= ch <= "z" else 26] += 1.0
            vectors.append(v)
        return vectors


class SyncEmbedder(WordCountEmbedder):
    """Broken: ``embed`` is a plain method returning the vectors (callers await it)."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]:  # type: ignore[override]
        return [[float(len(t))] * self.dimension for t in texts]


class WrongDimensionEmbedder(WordCountEmbedder):
    """Broken: declares 32 and returns 27 values."""

    dimension = 32

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await WordCountEmbedder().embed(texts)


class BatchDependentEmbedder(WordCountEmbedder):
    """Broken: normalises by the batch's size, so a text's vector depends on its batch."""

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raw = await super().embed(texts)
        return [[x / len(texts) for x in v] for v in raw]


class NoisyEmbedder(WordCountEmbedder):
    """Broken: a different vector each call."""

    calls = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        type(self).calls += 1
        raw = await super().embed(texts)
        return [[x + type(self).calls for x in v] for v in raw]


class NanOnEmptyEmbedder(WordCountEmbedder):
    """Broken: an empty text divides by a zero norm (NaN), as WordLlama's own embed did."""

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raw = await super().embed(texts)
        out = []
        for v in raw:
            norm = math.sqrt(sum(x * x for x in v))
            out.append([x / norm if norm else math.nan for x in v])
        return out


class IntegerEmbedder(WordCountEmbedder):
    """Broken: integer components (numpy-like dtypes leak the same way)."""

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[int(x) for x in v] for v in await super().embed(texts)]  # type: ignore[misc]


class LongInputRaisesEmbedder(WordCountEmbedder):
    """Broken: refuses a long text instead of truncating it."""

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if any(len(t) > 8000 for t in texts):
            raise ValueError("input too long")
        return await super().embed(texts)


class TestWordCountEmbedder(EmbedderConformance):
    @pytest.fixture
    def embedder(self) -> WordCountEmbedder:
        return WordCountEmbedder()


def test_embedder_suite_catches_broken_embedders(pytester: pytest.Pytester) -> None:
    brokens = [
        SyncEmbedder,
        WrongDimensionEmbedder,
        BatchDependentEmbedder,
        NoisyEmbedder,
        NanOnEmptyEmbedder,
        IntegerEmbedder,
        LongInputRaisesEmbedder,
    ]
    body = "\n".join(
        f"""
class Test{cls.__name__}(EmbedderConformance):
    @pytest.fixture
    def embedder(self):
        return {cls.__name__}()
"""
        for cls in [WordCountEmbedder, *brokens]
    )
    run = _run_inner(pytester, [WordCountEmbedder, *brokens], body)
    every = set(run.outcomes["TestWordCountEmbedder"])
    assert _failed(run, "TestWordCountEmbedder") == set()
    # Every check awaits embed(): a sync one fails them all but the declaration's.
    assert _failed(run, "TestSyncEmbedder") == every - {"test_dimension_is_declared"}
    assert _failed(run, "TestWrongDimensionEmbedder") == every - {
        "test_dimension_is_declared",
        "test_embed_is_async_as_the_protocol_says",
        "test_no_texts_no_vectors",
    }
    assert _failed(run, "TestBatchDependentEmbedder") == {
        "test_a_batch_equals_each_text_alone_in_order",
        "test_a_large_batch",
        "test_unicode_texts",
    }
    assert _failed(run, "TestNoisyEmbedder") == {
        "test_deterministic",
        "test_a_batch_equals_each_text_alone_in_order",
        "test_a_large_batch",
        "test_unicode_texts",
    }
    assert _failed(run, "TestNanOnEmptyEmbedder") == {"test_empty_and_blank_texts"}
    assert _failed(run, "TestIntegerEmbedder") == every - {
        "test_dimension_is_declared",
        "test_embed_is_async_as_the_protocol_says",
        "test_no_texts_no_vectors",
    }
    assert _failed(run, "TestLongInputRaisesEmbedder") == {"test_long_input"}
