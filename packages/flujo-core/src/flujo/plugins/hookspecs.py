"""The hooks a Flujo plugin can implement.

Every hook is named ``flujo_*`` and belongs to the pluggy project ``"flujo"``. Implement one
with the :data:`flujo.plugin.hookimpl` marker in the module your ``flujo.plugins`` entry
point names::

    from flujo.plugin import hookimpl

    @hookimpl
    def flujo_register_policies(register):
        register("deny_words", lambda config: DenyWords(config))

Compatibility: hook arguments are only ever *added*, never renamed or removed. An
implementation may accept fewer arguments than the spec lists, so a plugin written against
an older flujo-core keeps working.

How hooks are called (one way, for every hook): each implementation is called once, as a
plain function call, in plugin load order (by distribution name), with the arguments it names.
Hooks that collect answers use every non-``None`` answer in that order; a ``firstresult`` hook
(``flujo_retriever``) uses the first non-``None`` one and asks no further plugin. An
implementation that cannot be called that way is a load error, listed as ``error`` by ``flujo
plugins``: ``async def`` (never awaited), a generator function (its body would never run),
``wrapper=True``/``hookwrapper=True`` and ``tryfirst``/``trylast`` (the order is the load
order).

Registration hooks receive a ``register(name, factory)`` callable. A factory takes the
validated :class:`~flujo.config.FlujoConfig` and returns the object; it is only called when
the object is used, so keep heavy imports inside it. Plugins load in order of distribution
name; when two register the same name, the second is reported with the collision (``flujo
plugins`` shows it as ``error``) and not loaded, and the first keeps the name.

Observer hooks (``flujo_run_started``, ``flujo_step_started``, ``flujo_step_completed``,
``flujo_run_finalized``, ``flujo_policy_decided``) receive scrubbed data (a snapshot of the
context, never the live object) and run on the run's hot path: they may only *schedule* work
with ``runtime.tasks.schedule(...)``, never wait for I/O. Errors they raise are logged and
recorded, never raised into the run. The context snapshot of the run and step events
(``event.context``, ``event.context_keys``) is built the first time a plugin reads it
(:class:`flujo.domain.events.ContextSnapshot`): a plugin that never reads it costs the step
neither its scrub nor its copy, and one read late still sees the context as it was when the
event was made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from contextlib import AbstractAsyncContextManager, AbstractContextManager

    import click
    from pydantic import BaseModel

    from flujo.application.runtime import Runtime
    from flujo.config import FlujoConfig
    from flujo.domain.events import (
        PolicyDecided,
        RunFinalized,
        RunStarted,
        StepCompleted,
        StepStarted,
    )
    from flujo.domain.interfaces import (
        Embedder,
        Engine,
        Evaluator,
        GovernancePolicy,
        Migration,
        Retriever,
        SandboxProtocol,
        StateBackend,
        StateLocation,
        StepCommit,
        VectorStoreProtocol,
    )
    from flujo.domain.models import RunRecord
    from flujo.domain.operations import Operation
    from flujo.domain.run_view import RunViewSection

PROJECT_NAME = "flujo"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marker for hook implementations: decorate ``flujo_*`` functions with ``@hookimpl``."""

Factory = Callable[["FlujoConfig"], Any]
Register = Callable[[str, Factory], None]
"""``register(name, factory)``: what every ``flujo_register_*`` hook receives (untyped; the
per-kind aliases below say what each kind's factory must return)."""

RegisterPolicies = Callable[[str, Callable[["FlujoConfig"], "GovernancePolicy"]], None]
RegisterVectorStores = Callable[[str, Callable[["FlujoConfig"], "VectorStoreProtocol"]], None]
RegisterEmbedders = Callable[[str, Callable[["FlujoConfig"], "Embedder"]], None]
RegisterSandboxes = Callable[[str, Callable[["FlujoConfig"], "SandboxProtocol"]], None]
RegisterEvaluators = Callable[[str, Callable[["FlujoConfig"], "Evaluator"]], None]
RegisterTools = Callable[[str, Callable[["FlujoConfig"], Callable[..., object]]], None]
RegisterStateBackends = Callable[[str, Callable[["StateLocation"], "StateBackend"]], None]
RegisterEngines = Callable[[str, Callable[["FlujoConfig"], "Engine"]], None]


@hookspec
def flujo_register_policies(register: RegisterPolicies) -> None:
    """Register governance policy factories: ``register(name, factory(config) -> policy)``.

    A policy runs when its name is listed in ``[run] policies`` of ``flujo.toml`` (in that
    order) or passed to ``Flujo(..., policies=[...])``.

    .. versionadded:: 0.1
    """


@hookspec
def flujo_active_policies(config: FlujoConfig) -> Sequence[str]:
    """Return names of registered policies this plugin turns on from its own section.

    For a plugin whose users configure it in its own section (``[governance] policies =
    ["pii"]``) rather than in ``[run] policies``. The runner runs ``[run] policies`` first,
    then these, in plugin load order; a name listed twice runs once.

    .. versionadded:: 0.1
    """
    raise NotImplementedError


@hookspec
def flujo_register_vector_stores(register: RegisterVectorStores) -> None:
    """Register vector store factories: ``register(name, factory(config) -> VectorStoreProtocol)``.

    .. versionadded:: 0.1
    """


@hookspec
def flujo_register_embedders(register: RegisterEmbedders) -> None:
    """Register embedder factories: ``register(name, factory(config) -> Embedder)``.

    .. versionadded:: 0.1
    """


@hookspec
def flujo_register_sandboxes(register: RegisterSandboxes) -> None:
    """Register sandbox factories: ``register(name, factory(config) -> SandboxProtocol)``.

    .. versionadded:: 0.1
    """


@hookspec
def flujo_register_evaluators(register: RegisterEvaluators) -> None:
    """Register evaluator factories: ``register(name, factory(config) -> Evaluator)``.

    .. versionadded:: 0.1
    """


@hookspec
def flujo_register_tools(register: RegisterTools) -> None:
    """Register tools agents can use by id: ``register(tool_id, factory(config) -> callable)``.

    The callable is an (async) function with typed parameters and a docstring, as pydantic-ai
    expects of a tool. Agents name it in ``make_agent_async(..., tools=["tool_id"])``. Use a
    dotted id that says who owns it, e.g. ``"flujo.builtins.code_interpreter"``.

    The id is the tool's one name for policies, the audit and rules; the model sees it with
    each ``.`` written ``__`` (:func:`flujo.plugin.model_tool_name`). An id must be
    dot-separated names of ASCII letters and digits with single ``_`` or ``-`` between them,
    at most 64 characters in its model form; another id is a load error of the plugin.

    .. versionadded:: 0.1
    """


@hookspec
def flujo_register_state_backends(register: RegisterStateBackends) -> None:
    """Register state backends by URI scheme: ``register(scheme, factory(location) ->
    StateBackend)``.

    ``[state] uri = "myscheme://..."`` (and ``flujo state migrate --from/--to``) then open the
    backend this factory returns, unopened; ``location`` is a
    :class:`~flujo.domain.interfaces.StateLocation` (the URI, its scheme, the folder relative
    paths resolve from, the ``[state]`` settings). flujo-core registers ``sqlite`` and
    ``postgresql`` (and ``postgres``) through this same hook, first, so those schemes are taken.
    Prove a backend with :class:`flujo.testing.conformance.StateBackendConformance`.

    .. versionadded:: 0.2
    """


@hookspec
def flujo_register_engines(register: RegisterEngines) -> None:
    """Register execution engines: ``register(name, factory(config) -> Engine)``.

    An engine executes runs (:class:`~flujo.domain.interfaces.Engine`): ``[engine] kind =
    "name"`` in ``flujo.toml`` or ``flujo run --engine name`` picks one; an unknown name is
    an error listing every registered engine and its plugin. flujo-core registers ``local``
    (the in-process runner) through this same hook, first. An engine drives the runner's own
    step machinery and stores runs in its state database, so runs look alike to every
    command and plugin whichever engine ran them.

    .. versionadded:: 0.2
    """


@hookspec
def flujo_step_commit(event: StepCompleted, commit: StepCommit, runtime: Runtime) -> None:
    """Add statements to a finished step's own commit: ``commit.add(sql, params)``.

    Called once per step (inner steps of control-flow steps too, named by their path) after
    the step ran and before its result is committed; ``event`` is
    what :func:`flujo_step_completed` will receive (scrubbed: ``event.step`` is what is
    stored). Every statement added runs inside the step's fenced transaction, after the step's
    row: it commits with the step or not at all (a crash, a worker fenced out by another's
    take, a failing statement), so a plugin's rows never outlive or lag the step they belong
    to (flujo-memory's outbox). SQL uses named ``:param`` placeholders and
    ``commit.dialect``.

    The hook runs on the hot path: compute the rows, do no I/O. An error it raises is logged
    and recorded in ``runtime.tasks.failures`` and what it added is dropped; the step still
    commits. A statement that fails in the database fails the step's commit (a
    ``StateError`` naming the plugin): the run stops there, as for any failed commit.

    .. versionadded:: 0.2
    """


@hookspec
def flujo_register_commands(cli: click.Group) -> None:
    """Add click commands or groups to the ``flujo`` command line.

    Keep startup fast: add a :func:`flujo.cli.lazy_command` that imports your real commands only
    when they are invoked.

    .. versionadded:: 0.1
    """


@hookspec
def flujo_config_sections() -> dict[str, type[BaseModel]]:
    """Return the ``flujo.toml`` sections this plugin owns: ``{name: pydantic model}``.

    Flujo validates each section strictly against its model (forbid unknown keys in the
    model's config) and hands it back through ``config.section(name, Model)``.

    .. versionadded:: 0.1
    """
    raise NotImplementedError


@hookspec
def flujo_storage_migrations(dialect: str) -> Sequence[Migration]:
    """Return the migrations for the tables this plugin owns in the state database.

    ``dialect`` is ``"sqlite"`` or ``"postgresql"``. Each
    :class:`~flujo.domain.interfaces.Migration` has this plugin as ``owner`` and a version;
    applied versions are recorded and never re-run.

    .. versionadded:: 0.1
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def flujo_retriever(runtime: Runtime) -> Retriever | None:
    """Return the object that serves :meth:`PipelineContext.retrieve`, or ``None``.

    The first non-``None`` answer in plugin load order wins (later plugins are not asked); the
    memory plugin provides one.

    .. versionadded:: 0.1
    """
    raise NotImplementedError


@hookspec
def flujo_runtime_started(runtime: Runtime) -> None:
    """A runner started: its config is validated and its state database open.

    Attach long-lived services for this runner to ``runtime.services`` (users reach them as
    ``runner.services["name"]``), e.g. a memory plugin's index with its ``flush()``. Called
    once per runner, before its first run; an error here fails the run's start, naming the
    plugin.

    .. versionadded:: 0.1
    """


@hookspec
def flujo_runtime_closing(runtime: Runtime) -> None:
    """A runner is closing: schedule final work (flushes) on ``runtime.tasks``.

    Background work is drained right after this hook, up to ``[run] drain_timeout_s``, so what
    is scheduled here finishes or is recorded as not done.

    .. versionadded:: 0.1
    """


@hookspec
def flujo_run_started(event: RunStarted, runtime: Runtime) -> None:
    """Observe a run starting to execute. May only schedule background work.

    Called once each time a runner starts executing a run, after the run's row is persisted and
    before its first step: for a new run (``event.start == 0``) and for each resume
    (``event.start`` is the first step it runs). ``event.input`` and ``event.context`` are
    scrubbed; the context is a snapshot, never the live object. Errors are logged and recorded
    in ``runtime.tasks.failures``, never raised into the run.

    .. versionadded:: 0.2
    """


@hookspec
def flujo_step_started(event: StepStarted, runtime: Runtime) -> None:
    """Observe a step about to run. May only schedule background work.

    Called once per step execution, before the step's policies, agent, tools and retries, and
    before :func:`flujo_wrap_step` is entered. ``event.input`` and ``event.context`` are
    scrubbed; the context is a snapshot taken before the step. The step's end is observed by
    :func:`flujo_step_completed` (the "step finished" hook). Errors are logged and recorded,
    never raised into the run.

    .. versionadded:: 0.2
    """


@hookspec
def flujo_wrap_step(
    event: StepStarted, runtime: Runtime
) -> AbstractContextManager[object] | AbstractAsyncContextManager[object] | None:
    """Return a context manager to wrap one step's execution, or ``None`` not to.

    For tracing: open a span in ``__enter__`` (or ``__aenter__``), close it in ``__exit__``.
    The context manager is entered in the task that runs the step, right before the step's
    policies, agent, tool and sandbox calls, and exited right after them (before the result
    is persisted and :func:`flujo_step_completed` is called). A ``contextvars`` variable set
    on entry is therefore current for everything the step runs, tool calls included. Write
    it with ``@contextlib.contextmanager`` / ``@contextlib.asynccontextmanager``; the hook
    itself must be a plain function.

    Wrappers are entered in plugin load order (the first plugin's is outermost) and exited in
    reverse. A wrapper only observes: the value it yields is ignored, it cannot change the
    step's input or result, and it cannot swallow an exception (a true ``__exit__`` return is
    ignored). An error raised by the hook or by entering or exiting its context manager is
    logged and recorded in ``runtime.tasks.failures``, never raised into the run; a wrapper
    whose entry failed is not exited.

    .. versionadded:: 0.2
    """


@hookspec
def flujo_wrap_operation(
    operation: Operation, runtime: Runtime
) -> AbstractContextManager[object] | None:
    """Return a context manager to wrap one operation a plugin performs for a run, or
    ``None`` not to.

    **What**: work done for a run that is not a step and deserves a span of its own: a
    sandbox execution (``"sandbox.execute"``, flujo-sandbox), a memory retrieval
    (``"memory.retrieve"``) or indexing batch (``"memory.index"``, flujo-memory), a shadow
    evaluation (``"eval.evaluate"``, flujo-evals); any plugin reports its own with
    :func:`flujo.plugin.operation`. ``operation.attributes`` describe it (names, counts,
    statuses, a score; never the code, query or output it handles) and grow until the block
    exits, so read the results on exit; ``operation.error`` is set when it failed without
    raising; ``operation.runs`` names the runs it serves when it is done apart from them (in
    the background, after the run): link to those runs instead of nesting it under what is
    current. The plugins performing and wrapping operations never import each other.

    **When**: entered in the task performing the operation, right before it starts, and
    exited right after it (with the exception it raised, if any), so a ``contextvars`` value
    set on entry (an OpenTelemetry span made current) is current for the operation, its
    outgoing calls included (:func:`flujo.plugin.outgoing_headers` then answers for it).
    Called for operations of this runtime's runs (in their steps, and in the background work
    their hooks scheduled) and for operations a service of this runtime reports with
    ``runtime=``; not for idle plugins (``runtime.idle_plugins``). With no implementation,
    reporting an operation costs a context-variable read.

    The context manager is a plain (synchronous) one, entered and exited on the operation's
    path: do no I/O in it. Wrappers are entered in plugin load order and exited in reverse.
    A wrapper only observes: it cannot change the operation nor swallow its exception; an
    error raised by the hook, or on entering or exiting its context manager, is logged and
    recorded in ``runtime.tasks.failures``, never raised into the operation.

    .. versionadded:: 0.2
    """


@hookspec
def flujo_step_completed(event: StepCompleted, runtime: Runtime) -> None:
    """Observe a finished, persisted step (the "step finished" hook). May only schedule
    background work.

    Called for failed and blocked steps too, after any :func:`flujo_wrap_step` context manager
    has exited. ``event`` is scrubbed; its context is a snapshot, never the live object.

    .. versionadded:: 0.1
    """


@hookspec
def flujo_run_finalized(event: RunFinalized, runtime: Runtime) -> None:
    """Observe a run that reached its final status. May only schedule background work.

    .. versionadded:: 0.1
    """


@hookspec
def flujo_policy_decided(event: PolicyDecided, runtime: Runtime) -> None:
    """Observe every decision a governance policy took (for audit trails).

    ``event.rule`` and ``event.entities`` are what the policy said about this very decision
    with :func:`flujo.plugin.decision_detail`; ``event.reason`` and ``event.rule`` are
    scrubbed by the run's policies. May only schedule background work.

    .. versionadded:: 0.1
    """


@hookspec
def flujo_run_view(
    run: RunRecord, state: StateBackend, config: FlujoConfig
) -> RunViewSection | Awaitable[RunViewSection | None] | None:
    """Contribute this plugin's section to a run's view (``flujo runs show RUN_ID``).

    **When**: each time a run's view is shown, after the run and its steps were read;
    never during a run. ``run`` is the stored (scrubbed) run, steps included; ``state`` is
    the state database opened **read-only**; ``config`` the validated configuration.

    **Return** ``None`` when this plugin has nothing about this run (its section is left
    out), a :class:`~flujo.domain.run_view.RunViewSection`, or an awaitable of either: the
    hook itself is a plain function, so to read your tables write an ``async def`` helper and
    return its coroutine (``return _section(run, state)``). Read only what you stored (your
    own tables, already scrubbed); do not write.

    **Shown**: in plugin load order after the run and its steps, under the section's title
    (text) and under this plugin's distribution name in ``--json`` (``{"sections":
    {"flujo-governance": {"title", "fields", "columns", "rows", "data", "error"}}}``).

    **Errors**: anything the hook or its awaitable raises, an answer that is not a valid
    section (see :meth:`RunViewSection.check`), or no answer within 30 s is shown as one
    error line for this section; the run and the other sections are still shown and the
    command still succeeds.

    .. versionadded:: 0.2
    """
