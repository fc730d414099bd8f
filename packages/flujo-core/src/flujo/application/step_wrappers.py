"""Entering and exiting the context managers ``flujo_wrap_step`` implementations return."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from flujo.application.control_flow import _Elsewhere

if TYPE_CHECKING:
    import pluggy

    from flujo.plugins.manager import PluginManager

_log = logging.getLogger("flujo.plugins")


class StepWrappers:
    """Run the body inside every wrapper ``impls`` return, the first outermost.

    The wrappers are entered in :meth:`__aenter__`, in the caller's task, so a ``contextvars``
    value a wrapper sets on entry is current for the whole body (and for tasks the body
    starts, which copy the context). A wrapper only observes: its errors are passed to
    ``record`` instead of reaching the run, an ``__exit__`` that returns true does not swallow
    the body's exception, and a wrapper whose entry failed is not exited.

    A class rather than an ``@asynccontextmanager``: it is entered around every step a
    plugin wraps, and an async generator costs several times more to enter and exit.
    """

    __slots__ = ("_entered", "_impls", "_kwargs", "_plugins", "_record")

    def __init__(
        self,
        plugins: PluginManager,
        impls: Sequence[pluggy.HookImpl],
        record: Callable[[str], None],
        **kwargs: Any,
    ) -> None:
        self._plugins = plugins
        self._impls = impls
        self._record = record
        self._kwargs = kwargs
        self._entered: list[tuple[str, Any, bool]] = []

    async def __aenter__(self) -> None:
        entered, record = self._entered, self._record
        for impl in self._impls:
            where = f"{impl.plugin_name}.flujo_wrap_step"
            try:
                manager = self._plugins.call(impl, **self._kwargs)
                if manager is None:
                    continue
                if hasattr(manager, "__aenter__") and hasattr(manager, "__aexit__"):
                    await manager.__aenter__()
                    entered.append((where, manager, True))
                elif hasattr(manager, "__enter__") and hasattr(manager, "__exit__"):
                    manager.__enter__()
                    entered.append((where, manager, False))
                else:
                    record(f"{where}: returned {type(manager).__name__}, not a context manager")
            except (KeyboardInterrupt, GeneratorExit, asyncio.CancelledError):
                raise  # an interrupt or the task's own cancellation, not the wrapper's failure
            except BaseException as exc:  # noqa: BLE001 - a wrapper never breaks its step (SystemExit too)
                _log.error(
                    "plugin %s step wrapper failed on entry",
                    impl.plugin_name,
                    exc_info=(type(exc), exc, exc.__traceback__),
                )
                record(f"{where}: {exc!r}")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        entered, self._entered = self._entered, []
        if isinstance(exc, _Elsewhere):  # a part stopped at another's scope: not a failure
            exc_type, exc, traceback = None, None, None
        for where, manager, is_async in reversed(entered):
            try:
                if is_async:
                    await manager.__aexit__(exc_type, exc, traceback)
                else:
                    manager.__exit__(exc_type, exc, traceback)
            except (KeyboardInterrupt, GeneratorExit, asyncio.CancelledError):
                raise
            except BaseException as failure:  # noqa: BLE001 - a wrapper never breaks the step it wraps
                _log.error(
                    "step wrapper %s failed on exit",
                    where,
                    exc_info=(type(failure), failure, failure.__traceback__),
                )
                self._record(f"{where}: {failure!r}")
        # None: the body's exception, if any, goes on (a wrapper cannot swallow it).
