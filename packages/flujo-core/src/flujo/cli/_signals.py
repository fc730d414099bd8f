"""SIGINT/SIGTERM for the commands that execute runs (``flujo run``, ``flujo runs resume``).

The first signal asks the runner to stop (:mod:`flujo.application.interrupt`): the command
then prints the interrupted run's one line with the command that resumes it and exits 130
(SIGINT) or 143 (SIGTERM). A run that finished anyway is reported as it is stored (output,
exit 0). A second signal exits at once: the run in progress is stored ``interrupted`` with
its lease released, through a bounded connection of its own (the event loop may be blocked by
a sync step), and its step runs again on resume.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flujo.application.runner import Flujo
    from flujo.domain.models import PipelineResult

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def resume_hint(run_id: str, error: str | None) -> str:
    """The one line printed for an interrupted run."""
    return f"run {run_id} {error or 'interrupted'}; resume with: flujo runs resume {run_id}"


class Interrupts:
    """``with Interrupts(report) as stop:``: SIGINT/SIGTERM handling for one command.

    ``report(result)`` prints a finished run and returns its exit code; it is used when a
    second signal arrives after the run finished but before the command printed it.
    """

    def __init__(self, report: Callable[[PipelineResult], int]) -> None:
        self.signum: int | None = None
        self.runner: Flujo[Any] | None = None
        self.result: PipelineResult | None = None
        """The finished run the command has not printed yet."""
        self._report = report
        self._previous: dict[int, Any] = {}

    @property
    def exit_code(self) -> int:
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + (self.signum or signal.SIGINT)

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def attach(self, runner: Flujo[Any]) -> None:
        """``runner`` executes runs from now on; a signal that came before reaches it too."""
        self.runner = runner
        if self.signum is not None:
            runner.request_stop(self.signum)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            if self.runner is not None:
                self.runner.request_stop(signum)
            return
        self._exit_now(signum)

    def _exit_now(self, signum: int) -> None:
        """The second signal: store what can be stored in a bounded time, say it, exit."""
        code, line = 128 + signum, "interrupted"
        try:
            if self.result is not None:
                code, line = self._report(self.result), ""
            elif self.runner is not None and self.runner.current_run is not None:
                code, line = self._release(signum)
        except Exception as exc:  # noqa: BLE001 - exiting anyway: say why the state may lag
            line = f"interrupted; the run could not be marked interrupted: {exc}"
        if line:
            sys.stderr.write(line + "\n")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # at once: no interpreter teardown while a step still runs

    def _release(self, signum: int) -> tuple[int, str]:
        from flujo.domain.models import RunStatus
        from flujo.state._stop_now import interrupt_run_now

        runner = self.runner
        assert runner is not None
        assert runner.current_run is not None
        run_id, beat = runner.current_run
        config = runner.runtime.config
        name = signal.Signals(signum).name
        status, output, error = interrupt_run_now(
            config.state,
            config.root,
            run_id,
            beat.lease,
            f"interrupted by a second {name}: stopped at once; its current step runs again",
            runner.runtime.plugins.registry,
        )
        if status is RunStatus.INTERRUPTED:
            return 128 + signum, resume_hint(run_id, error)
        if status is RunStatus.SUCCEEDED:
            from flujo.cli._app import dump_json

            print(output if isinstance(output, str) else dump_json(output), flush=True)
            return 0, f"run {run_id}: succeeded"
        return 1, f"run {run_id} {status.value}: {error}"
