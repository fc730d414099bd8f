"""Live step progress for ``flujo run`` and ``flujo runs resume``, on stderr.

Fed by the lifecycle hooks every plugin can observe (``flujo_step_started``,
``flujo_step_completed``): the command registers a :class:`Progress` with the run's plugin
manager, so what it shows is what the runner did, not a guess from polling the database.

On a terminal one line per step is redrawn in place (step, elapsed time, status) while it
runs and left as the step's final line when it ends. Elsewhere (a pipe, a file, CI logs) each
step's start and end is one plain line. stdout is never written: it stays the run's output or
its ``--json``.

Observers run on the runner's event loop and may not block it, so they only queue the event;
a writer thread does the (possibly slow: a paused terminal, a full pipe) writing.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from flujo.domain.formatting import printable
from flujo.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from flujo.domain.events import StepCompleted, StepStarted
    from flujo.plugins.manager import PluginManager

__all__ = ["Progress"]

_REDRAW_S = 0.1
"""How often a terminal's running line is redrawn (its elapsed time moves)."""
_CLOSE_WAIT_S = 5.0
"""How long closing waits for queued lines to be written before giving up on them."""
_CLEAR = "\r\x1b[K"
"""Back to the start of the line and erase it (every terminal flujo runs in knows this)."""


@dataclass(frozen=True, slots=True)
class _Started:
    index: int
    name: str
    at: float


@dataclass(frozen=True, slots=True)
class _Finished:
    index: int
    name: str
    status: str
    elapsed_s: float
    error: str | None


_STOP = object()


class Progress:
    """Observes steps and writes their progress to ``stream`` (live when ``live``).

    Use :meth:`attach` before the runner starts its first run, :meth:`expect` to say how many
    steps the next run's pipeline has, and :meth:`close` before printing the result, so the
    progress lines come first and the terminal's line is finished.
    """

    def __init__(self, stream: TextIO, *, live: bool) -> None:
        self.stream = stream
        self.live = live
        self.total: int | None = None
        self._events: queue.Queue[object] = queue.Queue()
        self._running: dict[tuple[int, str], _Started] = {}
        """Steps started and not finished, oldest first: a control-flow step and the steps
        inside it (named by path), or parallel branches, run at once."""
        self._writer = threading.Thread(target=self._write_loop, name="flujo-progress", daemon=True)
        self._writer.start()
        self._closed = False

    def attach(self, plugins: PluginManager) -> None:
        """Observe the runs of runners built on ``plugins`` from now on."""
        plugins.register(self, "flujo-core:progress", entry_point="flujo.cli._progress")

    def expect(self, total: int) -> None:
        """The next run's pipeline has ``total`` steps (shown as ``[i/total]``)."""
        self.total = total

    # ------------------------------------------------------------------ hooks

    @hookimpl
    def flujo_step_started(self, event: StepStarted) -> None:
        self._events.put(_Started(event.index, event.step_name, time.monotonic()))

    @hookimpl
    def flujo_step_completed(self, event: StepCompleted) -> None:
        step = event.step
        self._events.put(
            _Finished(event.index, step.name, step.status.value, step.latency_ms / 1000, step.error)
        )

    # ------------------------------------------------------------------ writing

    def close(self) -> None:
        """Write what is queued, finish a terminal line left running, stop the writer."""
        if self._closed:
            return
        self._closed = True
        self._events.put(_STOP)
        self._writer.join(_CLOSE_WAIT_S)

    def _label(self, index: int, name: str) -> str:
        total = self.total
        where = f"{index + 1}/{total}" if total is not None and index < total else f"{index + 1}"
        return f"[{where}] {printable(name)}"

    def _write_loop(self) -> None:
        while True:
            try:
                item = self._events.get(timeout=_REDRAW_S if self.live else None)
            except queue.Empty:
                self._redraw()
                continue
            if item is _STOP:
                if self.live and self._running:
                    self._emit("\n")  # a step cut short (interrupted): keep its last state
                return
            if isinstance(item, _Started):
                self._running[(item.index, item.name)] = item
                if self.live:
                    self._redraw()
                else:
                    self._emit(f"{self._label(item.index, item.name)} started\n")
            elif isinstance(item, _Finished):
                self._running.pop((item.index, item.name), None)
                line = (
                    f"{self._label(item.index, item.name)} {item.status} in "
                    f"{_seconds(item.elapsed_s)}"
                )
                if item.error and item.status != "succeeded":
                    line += f": {printable(item.error, 200)}"
                self._emit((_CLEAR if self.live else "") + line + "\n")

    def _redraw(self) -> None:
        if not self._running or not self.live:
            return
        current = next(reversed(self._running.values()))  # the latest started
        elapsed = time.monotonic() - current.at
        line = f"{self._label(current.index, current.name)} running {_seconds(elapsed)}"
        if len(self._running) > 1:
            line += f" (+{len(self._running) - 1} running)"
        # A line wider than the terminal wraps, and "\r" would then redraw only its last
        # row: keep the running line within one row.
        width = self._width()
        if len(line) >= width:
            line = line[: max(width - 4, 1)] + "..."
        self._emit(_CLEAR + line)

    def _width(self) -> int:
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 0
        return columns or 80  # 0: a terminal that never said its size

    def _emit(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            # stderr closed or gone (a closed pipe): progress is a courtesy, the run goes on.
            self.live = False


def _seconds(value: float) -> str:
    return f"{value:.1f}s"
