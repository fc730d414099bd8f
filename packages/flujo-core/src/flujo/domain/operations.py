"""An operation a plugin performs for a run, as ``flujo_wrap_operation`` sees it.

Steps are traced by the runner's own hooks; the work plugins do for a run beside them (a
sandbox execution, a memory retrieval or indexing batch, a shadow evaluation) is reported
with :func:`flujo.plugin.operation`, and a tracing plugin wraps each one in a span. The
plugins that do the work and the ones that trace it never know each other: they meet here.

Attributes *describe* an operation (names, counts, statuses, durations, a score), never the
data it handles: no code, no query, no output. A tracing plugin scrubs them all the same.

.. versionadded:: 0.2
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["KINDS", "Operation", "OperationValue"]

OperationValue = str | bool | int | float
"""What an operation's attribute holds (what every trace format can carry)."""

KINDS = {
    "sandbox.execute": "code run in a sandbox (flujo-sandbox: one per execution)",
    "memory.retrieve": "a search of long-term memory (flujo-memory: context.retrieve)",
    "memory.index": "a batch of step outputs written to memory (flujo-memory, background)",
    "eval.evaluate": "a shadow evaluation of a finished run (flujo-evals, background)",
}
"""The kinds Flujo's own plugins report, and what each one is. Another plugin names its own
(``"acme.lookup"``): dot-separated lower-case words."""

_KIND = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")


@dataclass(slots=True)
class Operation:
    """One operation, from its start until the block reporting it exits.

    ``attributes`` grow while it runs (:meth:`set`): a wrapper reads them when it exits, so
    results (an exit code, a number of hits, a score) are there too. ``error`` says why it
    failed when it failed without raising (a sandbox answering an error, a judge that could
    not score); an exception raised out of the block reaches the wrapper's ``__exit__``.
    ``runs`` names the runs it serves when it is done apart from them (after the run or in
    the background: indexing, evaluations): a tracer links to those runs rather than nesting
    the operation under whatever is current; empty for work done inside a step.
    """

    kind: str
    attributes: dict[str, OperationValue] = field(default_factory=dict)
    runs: tuple[str, ...] = ()
    error: str | None = None

    def __post_init__(self) -> None:
        if not _KIND.fullmatch(self.kind):
            raise ValueError(
                f"operation kind {self.kind!r}: dot-separated lower-case words, e.g. "
                "'sandbox.execute'"
            )
        self.set(self.attributes)

    def set(self, attributes: Mapping[str, OperationValue]) -> None:
        """Add (or replace) attributes; a value that is not a str, bool, int or float is a
        ``TypeError`` naming it (a reporting bug, found where it is made)."""
        for name, value in attributes.items():
            if not isinstance(name, str) or not isinstance(value, str | bool | int | float):
                raise TypeError(
                    f"operation {self.kind!r} attribute {name!r}: {type(value).__name__} is "
                    "not a str, bool, int or float"
                )
        if attributes is not self.attributes:
            self.attributes.update(attributes)

    def fail(self, error: str) -> None:
        """Say the operation failed (without raising) and why."""
        self.error = error
