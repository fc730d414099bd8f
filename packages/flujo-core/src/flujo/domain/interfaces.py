"""The contracts plugins implement: policies, memory, sandboxes, evaluators and state.

Each protocol here is what the core calls; a plugin registers a *factory* for an
implementation through the hooks in :mod:`flujo.plugins.hookspecs`, and proves it behaves with
the matching conformance suite in :mod:`flujo.testing.conformance`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from flujo.domain.models import RunRecord, RunStatus, StepResult, Usage

if TYPE_CHECKING:
    from pathlib import Path

    from flujo.application.runner import Flujo
    from flujo.config import StateSettings
    from flujo.domain.context import PipelineContext
    from flujo.domain.models import PipelineResult

# --------------------------------------------------------------------------- governance


class PolicyDecision(StrEnum):
    """What a governance policy decides about an input, a tool call or an output."""

    ALLOW = "allow"
    DENY = "deny"
    REDACT = "redact"
    """Go on with the (redacted) data the policy returned. Not valid for tool calls."""
    APPROVE = "approve"
    """Only for tool calls: the call waits for a person (the run pauses until
    ``flujo runs approve``/``reject``; see :class:`~flujo.domain.errors.ToolApprovalRequired`,
    which says it with a reason and an expiry). Anywhere else it denies: a person cannot be
    asked about an input or an output, and not asking must never let data through."""


@runtime_checkable
class GovernancePolicy(Protocol):
    """Middleware that runs before an agent acts.

    Methods may be sync or async. ``inspect_input`` returns the decision and the data to pass on
    (the redacted data for ``REDACT``). ``inspect_tool_call`` runs before every tool the agent
    calls. To deny with a specific reason, raise :class:`~flujo.domain.errors.PolicyViolation`
    instead of returning ``DENY``; to refuse one tool call and let the step go on, raise
    :class:`~flujo.domain.errors.ToolCallRefused`; to have a person approve one tool call
    first, return ``APPROVE`` or raise :class:`~flujo.domain.errors.ToolApprovalRequired`.

    Optional methods, used when present:

    - ``inspect_output(context, output) -> (PolicyDecision, output)``: the step's output.
    - ``inspect_tool_result(context, tool_name, result) -> (PolicyDecision, result)``: a
      tool's result, before the model sees it.
    - ``scrub(context, value) -> value``: what may leave the process. The runner passes
      everything it persists (run input, step outputs and errors, context, final output) and
      every payload it hands to other plugins (step and run events) through it.
    - ``restore(context, output) -> output``: the final output handed back to the caller
      (e.g. pseudonyms replaced by the original values); never persisted.
    """

    name: str

    def inspect_input(
        self, context: PipelineContext, data: Any
    ) -> tuple[PolicyDecision, Any] | Awaitable[tuple[PolicyDecision, Any]]:
        """Decide about the data a step is about to receive."""
        ...

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision | Awaitable[PolicyDecision]:
        """Decide whether the agent may call ``tool_name`` with ``args``."""
        ...


# --------------------------------------------------------------------------- memory


@dataclass(slots=True)
class Memory:
    """One remembered item: text, its vector, and where it came from."""

    id: str
    text: str
    vector: list[float] | None = None
    scope: str = "default"
    run_id: str | None = None
    step_name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0


@dataclass(slots=True)
class ScoredMemory:
    """A memory returned by a search, with its similarity score (higher is closer)."""

    memory: Memory
    score: float


@runtime_checkable
class VectorStoreProtocol(Protocol):
    """Where memories live.

    ``filter`` maps ``scope``, ``run_id``, ``step_name`` or a metadata key to a value; a memory
    matches when every entry is equal, type included (``"2"`` does not match ``2``). Filters
    are applied *before* ``limit``, so a selective filter still returns ``limit`` results.
    Metadata values come back with the types they were stored with.
    """

    async def add(self, memories: Sequence[Memory]) -> None:
        """Insert or replace memories (idempotent on ``Memory.id``)."""
        ...

    async def search(
        self, query_vector: Sequence[float], limit: int, *, filter: Mapping[str, Any] | None = None
    ) -> list[ScoredMemory]:
        """The ``limit`` memories closest to ``query_vector`` that match ``filter``."""
        ...

    async def delete(
        self, *, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        """Delete memories by id and/or filter; return how many were deleted."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of a fixed ``dimension``."""

    dimension: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...


@runtime_checkable
class Retriever(Protocol):
    """What :meth:`PipelineContext.retrieve` delegates to (provided by a memory plugin)."""

    async def retrieve(
        self,
        context: PipelineContext,
        query: str,
        limit: int,
        *,
        filter: Mapping[str, Any] | None = None,
    ) -> list[ScoredMemory]:
        """Memories relevant to ``query`` for this context's run."""
        ...


# --------------------------------------------------------------------------- sandboxes


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Resource ceilings for one execution. ``None`` means the backend's default."""

    memory_mb: int | None = None
    cpu_s: float | None = None
    pids: int | None = None
    output_bytes: int | None = None
    network: bool = False


@dataclass(slots=True)
class ExecutionResult:
    """The outcome of running code in a sandbox."""

    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool = False
    truncated: bool = False
    artifacts: dict[str, bytes] = field(default_factory=dict)
    duration_ms: float = 0.0
    limits: dict[str, Any] = field(default_factory=dict)
    """The limits the backend actually enforced."""
    backend: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the code exited 0, in time, with no sandbox error."""
        return self.exit_code == 0 and not self.timed_out and self.error is None


@runtime_checkable
class SandboxProtocol(Protocol):
    """Somewhere safe to run generated code.

    ``files`` are placed at their relative paths in the code's working directory. Output over
    ``limits.output_bytes`` is cut (``truncated=True``; a notice of at most 256 bytes may be
    appended). Executions share no files unless the sandbox sets ``stateful = True``. An
    optional ``enforced_limits`` attribute names the limits it enforces (``memory_mb``,
    ``cpu_s``, ``pids``, ``network``; all of them when absent); see ``SandboxConformance``.
    """

    async def exec_code(
        self,
        code: str,
        lang: str = "python",
        *,
        files: Mapping[str, bytes] | None = None,
        timeout_s: float | None = None,
        limits: SandboxLimits | None = None,
    ) -> ExecutionResult:
        """Run ``code`` and report what happened. Failures of the code are results, not
        exceptions; a sandbox that cannot enforce ``limits`` raises."""
        ...


# --------------------------------------------------------------------------- evaluations


@dataclass(slots=True)
class EvaluationResult:
    """A judgement of one run: a score in [0, 1], a label and the reasoning."""

    score: float
    label: str = ""
    reasoning: str = ""
    cost_usd: float = 0.0


@runtime_checkable
class Evaluator(Protocol):
    """Scores a finished run, without changing it.

    An evaluator whose score depends only on the run sets ``deterministic = True``.
    """

    name: str

    async def evaluate(self, run: RunRecord) -> EvaluationResult:
        """Judge ``run`` (its input, output, steps and status)."""
        ...


# --------------------------------------------------------------------------- engines


@runtime_checkable
class Engine(Protocol):
    """Executes runs: ``local`` (the runner's own step loop, in this process) or a plugin's
    (flujo-temporal's ``temporal``), chosen by ``[engine] kind`` or ``flujo run --engine``.

    Every engine drives the same step machinery (``runner``'s policies, limits, retries,
    plugins) and stores runs in the runner's state database, so ``flujo runs list/show``
    read them all alike.
    """

    name: str

    async def run(
        self,
        runner: Flujo[Any],
        input: Any,
        *,
        context: PipelineContext | Mapping[str, Any] | None = None,
    ) -> PipelineResult:
        """Execute a new run of ``runner``'s pipeline on ``input`` and return its result: once
        it ends, or once it is stored ``paused`` for a person (as ``local`` returns then)."""
        ...

    async def answered(self, run_id: str) -> str | None:
        """A person answered the human step run ``run_id`` paused at (``flujo runs approve``
        or ``reject`` stored the answer): continue it if this engine is waiting on it.
        Returns what happens next, in words, or ``None`` when nothing continues it by itself
        (the local engine: ``flujo runs resume`` does)."""
        ...

    async def resume(self, runner: Flujo[Any], run_id: str) -> PipelineResult:
        """:meth:`Flujo.resume_async` on run ``run_id``, which this engine drives (recorded
        with it): wait for it to end or pause again and return it as :meth:`run` does, never
        executing it in the caller's process alongside the engine."""
        ...

    # Optional: ``async def aclose(self) -> None``, called when the runner that made the
    # engine closes (to stop what the engine started for it, e.g. an embedded worker).


# --------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned schema change owned by ``owner`` (``"flujo"`` or a plugin's name).

    Versions are applied in order, once, per owner. ``statements`` run in one transaction.
    """

    owner: str
    version: int
    statements: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Lease:
    """The fencing token of a worker executing a run: who holds it, and which take it is.

    ``epoch`` grows every time a run is taken (created: 1; resumed or claimed when stale: the
    run's new version), so a worker that lost its lease, even to a worker with the same
    ``owner`` id, holds an old epoch: every write it attempts under it is refused.
    """

    owner: str
    epoch: int


class LeaseRenewer(Protocol):
    """Renews leases from the heartbeat's own thread, on its own connection, so a lease stays
    alive however long a step blocks the event loop. Sync: it never touches the loop."""

    def renew(self, run_id: str, lease: Lease, lease_s: float) -> bool:
        """Extend ``lease`` by ``lease_s`` from now. ``False`` if another take superseded it;
        ``True`` also when its holder already ended the run under it (released, not lost)."""
        ...

    def close(self) -> None:
        """Release the connection. Idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class StateLocation:
    """Where a state database is: what a state backend's factory receives.

    The backend is chosen by the URI's scheme (``sqlite:///...`` -> ``sqlite``,
    ``postgresql://...`` -> ``postgresql``, ``example-sqlite:///...`` -> ``example-sqlite``; a
    plain path, no ``scheme://``, is ``sqlite``).
    """

    uri: str
    """The URI as configured (``[state] uri``, or ``flujo state migrate --from/--to``). It may
    hold a password: show it through ``flujo.state.dsn.redact_dsn``, never as is."""
    scheme: str
    """The URI's scheme, lower-case: the name the backend is registered under."""
    root: Path
    """The folder relative paths resolve from (the folder of ``flujo.toml``)."""
    settings: StateSettings
    """``[state]``: ``synchronous`` (SQLite fsync policy), ``pool_size`` (connections per
    process), ``lease_s``."""

    def path(self) -> Path | str:
        """The file a file-based backend uses: ``scheme:///relative.db`` resolves from
        :attr:`root`, ``scheme:////absolute.db`` is absolute, ``scheme:///:memory:`` (and a
        plain ``:memory:``) is ``":memory:"``, a plain path resolves from :attr:`root`.

        :raises ConfigError: the URI has no ``///`` after its scheme.
        """
        from flujo.domain.errors import ConfigError

        if "://" not in self.uri:
            return ":memory:" if self.uri == ":memory:" else self.root / self.uri
        rest = self.uri.split("://", 1)[1]
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(
                f"state uri {self.uri!r}: expected {self.scheme}:///path/to/file.db "
                "(three slashes, then a path)"
            )
        path = rest[1:]
        return ":memory:" if path == ":memory:" else self.root / path


@dataclass(frozen=True, slots=True)
class StepWrite:
    """One statement a plugin adds to a step's commit (see ``flujo_step_commit``).

    ``sql`` uses named ``:param`` placeholders (as :meth:`StateBackend.execute`) and the
    state database's dialect; ``params`` are its values (data, never spliced into the SQL).
    """

    owner: str
    """The plugin that added it (named in the error if the statement fails)."""
    sql: str
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class InnerRow:
    """One finished inner step of a :meth:`InnerStepBatches.save_inner_steps` batch."""

    index: int
    """The top-level control-flow step it ran in."""
    step: StepResult
    """Its result, named by its path."""
    scope_context_json: str | None
    """Its scope's context when that is a copy (a map item, a parallel branch)."""


@runtime_checkable
class InnerStepBatches(Protocol):
    """An optional capability of a :class:`StateBackend`: the group commit of inner steps
    that finish together (the map items or parallel branches of one event-loop turn). A
    backend without it gets one :meth:`StateBackend.save_inner_step` per step."""

    async def save_inner_steps(
        self,
        run_id: str,
        rows: Sequence[InnerRow],
        *,
        context_json: str | None,
        usage: Usage,
        lease: Lease,
    ) -> None:
        """Record ``rows`` as :meth:`StateBackend.save_inner_step` would one after another
        (without plugin writes), in one transaction: one fenced update of the run row (its
        ``usage``, and ``context_json`` unless ``None``), then every row (a later row of a
        path replaces an earlier one). All commit or none: when the lease is no longer held,
        :class:`~flujo.domain.errors.LeaseLostError` is raised and no row is written."""
        ...


class StepCommit:
    """What a ``flujo_step_commit`` implementation adds to a step's commit.

    Every statement added is executed by the state backend inside the step's own fenced
    transaction (after the step's row): all of them commit with the step, or none does (a
    crash, a refused fence, a failing statement).
    """

    __slots__ = ("dialect", "owner", "writes")

    def __init__(self, dialect: str, owner: str) -> None:
        self.dialect = dialect
        """The state database's dialect (``"sqlite"``, ``"postgresql"``, or a third party's):
        write the SQL for it."""
        self.owner = owner
        """The plugin whose hook receives this object."""
        self.writes: list[StepWrite] = []

    def add(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Execute ``sql`` (named ``:param`` placeholders) with ``params`` in the step's
        transaction."""
        if not isinstance(sql, str) or not sql.strip():
            raise TypeError("StepCommit.add: sql must be a non-empty SQL statement")
        self.writes.append(StepWrite(self.owner, sql, dict(params or {})))


@runtime_checkable
class StateBackend(Protocol):
    """Durable execution state: one row per run, one per finished step, and plugin tables.

    SQL passed to :meth:`execute` and :meth:`fetch_all` uses named ``:param`` placeholders in
    every dialect.
    """

    dialect: str

    async def open(
        self, migrations: Sequence[Migration] = (), *, create: bool = True, read_only: bool = False
    ) -> None:
        """Connect and apply the core's and the given migrations.

        ``create=False``: the database must exist already (``StateNotFoundError``). With
        ``read_only`` too, and nothing is migrated or written.
        """
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...

    async def create_run(self, run: RunRecord, *, owner: str, lease_s: float) -> Lease:
        """Insert a new run (status ``running``), leased to worker ``owner`` for ``lease_s``."""
        ...

    async def acquire_lease(
        self, run_id: str, owner: str, lease_s: float, *, seen_version: int
    ) -> Lease | None:
        """Take an existing run to execute it: mark it ``running`` and lease it to ``owner``.

        One conditional statement: it succeeds only if the run is still at ``seen_version``
        (the version its caller read, so nothing changed it since), has not succeeded, and is
        not running under another worker's live lease. ``None`` otherwise.

        The lease granted is ``Lease(owner, seen_version + 1)``: every take (this one, a
        claim) sets the epoch to the run's new version, which only grows. The caller knows the
        lease before the take lands, so its heartbeat can renew it even while the event loop
        is blocked.
        """
        ...

    def lease_renewer(self) -> LeaseRenewer:
        """A renewer with its own connection, for the heartbeat thread."""
        ...

    async def claim_stale(
        self, owner: str, lease_s: float, *, limit: int, pipeline_version: str | None = None
    ) -> list[str]:
        """Lease up to ``limit`` running runs whose lease expired to ``owner``; each stale run
        is claimed by exactly one caller, however many call at once. A claim is a take: the
        previous holder is fenced out."""
        ...

    async def save_step(
        self,
        run_id: str,
        index: int,
        step: StepResult,
        *,
        context_json: str,
        usage: Usage,
        lease: Lease,
        writes: Sequence[StepWrite] = (),
    ) -> None:
        """Record a finished step and, when it succeeded, advance the run past it, in one
        transaction. ``context_json`` is the context as JSON text.

        ``writes``: plugins' statements (``flujo_step_commit``), executed in that same
        transaction after the step's row, in order: they commit with the step or not at all. A
        failing one fails the whole commit with a :class:`~flujo.domain.errors.StateError`
        naming its plugin.

        Fenced: in the same transaction, the run must still be ``running`` under ``lease``;
        otherwise nothing is written (``writes`` neither) and
        :class:`~flujo.domain.errors.LeaseLostError` is raised."""
        ...

    async def save_inner_step(
        self,
        run_id: str,
        index: int,
        step: StepResult,
        *,
        context_json: str | None,
        scope_context_json: str | None,
        usage: Usage,
        lease: Lease,
        writes: Sequence[StepWrite] = (),
    ) -> None:
        """Record a finished step inside the control-flow step at ``index``, keyed by its
        path (``step.name``), replacing an earlier row of that path; fenced like
        :meth:`save_step`, in one transaction with the run row's ``usage`` and (unless
        ``None``) ``context_json``. The run's current step is not advanced.
        ``scope_context_json`` is the context of the step's scope when it is a copy (a map
        item, a parallel branch). ``writes``: as for :meth:`save_step`, in this transaction."""
        ...

    async def finalize_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        output: Any,
        error: str | None,
        context_json: str,
        usage: Usage,
        lease: Lease,
    ) -> None:
        """Write the run's final status and output, and release its lease. Fenced like
        :meth:`save_step`."""
        ...

    async def get_run(self, run_id: str) -> RunRecord | None:
        """A run with its step results, or ``None``."""
        ...

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        limit: int = 50,
        pipeline: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        id_prefix: str | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first (ties by run id), without step results.

        Filters (all that are given must hold): ``status``, ``pipeline`` (its name),
        ``created_after`` (inclusive) / ``created_before`` (exclusive) in seconds since the
        epoch, ``id_prefix`` (lower-case hex, ``""`` any; anything else matches no run).
        ``after``: the ``(created_at, run_id)`` of the last run of the previous page, to page
        through by position (keyset) rather than by offset.

        .. versionchanged:: 0.2 the filters and ``after``.
        """
        ...

    async def count_runs(
        self,
        *,
        pipeline: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        id_prefix: str | None = None,
        by_pipeline: bool = False,
    ) -> dict[tuple[str | None, RunStatus], int]:
        """How many runs the filters (as in :meth:`list_runs`) cover, by status: keys are
        ``(None, status)``, or ``(pipeline name, status)`` with ``by_pipeline``. Statuses
        with no run are left out.

        .. versionadded:: 0.2
        """
        ...

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a write statement on a plugin's table; return the affected row count."""
        ...

    async def fetch_all(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run a query on a plugin's table; rows as dicts."""
        ...
