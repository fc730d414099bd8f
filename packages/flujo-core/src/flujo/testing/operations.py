""":class:`OperationRecorder`: a test plugin that records the operations reported to the
runner it is registered with (``flujo_wrap_operation``), for the tests of a plugin that
reports them (a sandbox, a memory, an evaluator) without installing a tracing plugin.

    recorder = OperationRecorder()
    manager.register(recorder, "recorder")
    ... run ...
    [op] = recorder.of("sandbox.execute")
    assert op.attributes["flujo.sandbox.exit_code"] == 0
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from flujo.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from flujo.domain.operations import Operation

__all__ = ["OperationRecorder"]


class OperationRecorder:
    """Records each operation as it is when its block exits (its results included), in the
    order they end; override :meth:`around` to do something while one runs."""

    def __init__(self) -> None:
        self.seen: list[Operation] = []

    @hookimpl
    def flujo_wrap_operation(self, operation: Operation) -> contextlib.AbstractContextManager[None]:
        return self._recorded(operation)

    @contextlib.contextmanager
    def _recorded(self, operation: Operation) -> Iterator[None]:
        try:
            with self.around(operation):
                yield
        finally:
            self.seen.append(operation)

    def around(self, operation: Operation) -> contextlib.AbstractContextManager[object]:
        """What to do while ``operation`` runs (nothing)."""
        return contextlib.nullcontext()

    def of(self, kind: str) -> list[Operation]:
        """The recorded operations of ``kind``."""
        return [op for op in self.seen if op.kind == kind]

    def carried(self) -> str:
        """Every attribute and error of every recorded operation as one text (to search for
        values that must not be there)."""
        return " ".join(
            f"{name}={value}"
            for op in self.seen
            for name, value in [*op.attributes.items(), ("error", op.error)]
        )
