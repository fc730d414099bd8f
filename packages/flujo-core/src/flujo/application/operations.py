"""Reporting an operation a plugin performs for a run (:func:`operation`) to the plugins that
wrap it (``flujo_wrap_operation``: a tracing plugin's span).

Which runner's plugins hear of it: the one whose run is executing in this task (a sandbox
call from a step's tool, ``context.retrieve``, and the background work a run's hooks
scheduled), or the ``runtime`` passed explicitly (a service that belongs to one runner).
Outside both, and when no plugin of that runner wraps operations (or only idle ones), the
block costs a context-variable read and builds nothing (about a microsecond).

.. versionadded:: 0.2
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from flujo.application.control_flow import current_run
from flujo.domain.operations import Operation, OperationValue

if TYPE_CHECKING:
    import pluggy

    from flujo.application.runtime import Runtime

__all__ = ["HOOK", "operation"]

HOOK = "flujo_wrap_operation"
_log = logging.getLogger("flujo.plugins")


class _Unreported(Operation):
    """What the block gets when nobody wraps operations: keeps nothing."""

    __slots__ = ()

    def set(self, attributes: Mapping[str, OperationValue]) -> None:
        pass

    def fail(self, error: str) -> None:
        pass


class _Nothing:
    """The block when nobody wraps operations (one shared instance: it holds no state)."""

    __slots__ = ()
    _operation = _Unreported("unreported.operation")

    def __enter__(self) -> Operation:
        return self._operation

    def __exit__(self, *exc_info: object) -> None:
        return None


_NOTHING = _Nothing()


class _Wrapped:
    """Enters every wrapper on entry, exits them in reverse; a wrapper only observes."""

    __slots__ = ("_entered", "_impls", "_operation", "_runtime")

    def __init__(
        self, operation: Operation, runtime: Runtime, impls: Sequence[pluggy.HookImpl]
    ) -> None:
        self._operation = operation
        self._runtime = runtime
        self._impls = impls
        self._entered: list[tuple[str, Any]] = []

    def _failed(self, where: str, exc: BaseException, when: str) -> None:
        _log.error(
            "operation wrapper %s failed on %s", where, when, exc_info=(type(exc), exc, None)
        )
        self._runtime.tasks.record_failure(where, repr(exc))

    def __enter__(self) -> Operation:
        plugins = self._runtime.plugins
        for impl in self._impls:
            where = f"{impl.plugin_name}.{HOOK}"
            try:
                manager = plugins.call(impl, operation=self._operation, runtime=self._runtime)
                if manager is None:
                    continue
                if not (hasattr(manager, "__enter__") and hasattr(manager, "__exit__")):
                    self._runtime.tasks.record_failure(
                        where, f"returned {type(manager).__name__}, not a context manager"
                    )
                    continue
                manager.__enter__()
                self._entered.append((where, manager))
            except (KeyboardInterrupt, GeneratorExit, asyncio.CancelledError):
                raise
            except BaseException as exc:  # noqa: BLE001 - a wrapper never breaks the operation
                self._failed(where, exc, "entry")
        return self._operation

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        entered, self._entered = self._entered, []
        for where, manager in reversed(entered):
            try:
                manager.__exit__(exc_type, exc, traceback)  # a true answer swallows nothing
            except (KeyboardInterrupt, GeneratorExit, asyncio.CancelledError):
                raise
            except BaseException as exc_:  # noqa: BLE001 - a wrapper never breaks the operation
                self._failed(where, exc_, "exit")


def operation(
    kind: str,
    attributes: Mapping[str, OperationValue] | None = None,
    *,
    runs: Sequence[str] = (),
    runtime: Runtime | None = None,
) -> _Wrapped | _Nothing:
    """Report the operation the ``with`` block performs to the plugins that wrap operations
    (``flujo_wrap_operation``: a tracing plugin makes it a span).

    ``kind``: what it is (``"sandbox.execute"``; see :data:`flujo.domain.operations.KINDS`);
    ``attributes``: what describes it, never the data it handles (no code, query or output);
    add results inside the block with ``op.set({...})``, and ``op.fail(reason)`` when it
    failed without raising. ``runs``: the runs it serves when done apart from them (in the
    background, after the run). ``runtime``: the runner whose plugins hear of it, when the
    caller holds it (default: the runner whose run executes in this task)::

        with operation("sandbox.execute", {"flujo.sandbox.backend": "local"}) as op:
            result = await run_it()
            op.set({"flujo.sandbox.exit_code": result.exit_code})

    A wrapper cannot change the operation or stop it: its errors are logged and recorded in
    ``runtime.tasks.failures``, and an exception raised in the block goes on as it was.
    """
    if runtime is None:
        env = current_run()
        if env is None:
            return _NOTHING
        impls: Sequence[pluggy.HookImpl] = env.manager.operation_wrappers
        if not impls:
            return _NOTHING
        runtime = env.manager.runtime
    else:
        idle = runtime.idle_plugins
        impls = [i for i in runtime.plugins.implementations(HOOK) if i.plugin_name not in idle]
        if not impls:
            return _NOTHING
    return _Wrapped(Operation(kind, dict(attributes or {}), tuple(runs)), runtime, impls)
