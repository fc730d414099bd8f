"""Scrubbing log records: a record factory for the whole process, and a filter for handlers.

With ``[governance.pii] scrub_logs = true`` (the default) the ``pii`` policy installs
:func:`install_log_scrubbing` when it is created: every :class:`logging.LogRecord` the process
creates from then on has its message (with its arguments merged in), its exception text and
its stack text scrubbed *before* any handler sees it, so handlers added later are covered
too. In ``pseudonymize`` mode a record logged inside a step uses that run's pseudonyms.

To scrub only some handlers instead, attach a :class:`PIILogFilter` to them yourself::

    handler.addFilter(PIILogFilter(policy))
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

from flujo.domain.scope import current_step_scope

__all__ = [
    "PIILogFilter",
    "install_log_scrubbing",
    "log_scrubbing_installed",
    "scrub_record",
    "uninstall_log_scrubbing",
]

TextScrubber = Callable[[str, "str | None"], str]
"""``scrub(text, run_id) -> text``, e.g. :meth:`PIIScrubbingPolicy.scrub_text`."""

_lock = threading.Lock()
_active: TextScrubber | None = None
_previous_factory: Callable[..., logging.LogRecord] | None = None


_busy = threading.local()


def scrub_record(record: logging.LogRecord, scrub: TextScrubber) -> None:
    """Scrub ``record`` in place: message and arguments merged, exception and stack text.

    Records logged *while* scrubbing (an engine's own debug logging) are left alone, so
    scrubbing never recurses.
    """
    if getattr(_busy, "active", False):
        return
    _busy.active = True
    try:
        _scrub_record(record, scrub)
    finally:
        _busy.active = False


def _scrub_record(record: logging.LogRecord, scrub: TextScrubber) -> None:
    scope = current_step_scope()
    run_id = scope.run_id if scope is not None else None
    try:
        message = record.getMessage()
    except (TypeError, ValueError):
        message = f"{record.msg!s} {record.args!r}"
    record.msg = scrub(message, run_id)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        record.exc_text = scrub(record.exc_text, run_id)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info, run_id)


class PIILogFilter(logging.Filter):
    """A handler (or logger) filter that scrubs each record it sees; never drops one."""

    def __init__(self, scrub: TextScrubber | Any) -> None:
        super().__init__()
        self._scrub: TextScrubber = getattr(scrub, "scrub_text", scrub)

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub ``record`` and let it through."""
        scrub_record(record, self._scrub)
        return True


def _factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _previous_factory is not None
    record = _previous_factory(*args, **kwargs)
    scrub = _active
    if scrub is not None:
        scrub_record(record, scrub)
    return record


def install_log_scrubbing(scrub: TextScrubber | Any) -> None:
    """Scrub every log record created in this process with ``scrub`` (a
    :class:`~flujo_governance.pii.PIIScrubbingPolicy` or a ``scrub(text, run_id)`` function).

    Installing again replaces the scrubber; the record factory is wrapped only once.
    """
    global _active, _previous_factory
    with _lock:
        _active = getattr(scrub, "scrub_text", scrub)
        if _previous_factory is None:
            _previous_factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_factory)


def uninstall_log_scrubbing() -> None:
    """Restore the record factory that was in place before :func:`install_log_scrubbing`."""
    global _active, _previous_factory
    with _lock:
        _active = None
        if _previous_factory is not None and logging.getLogRecordFactory() is _factory:
            logging.setLogRecordFactory(_previous_factory)
            _previous_factory = None


def log_scrubbing_installed() -> bool:
    """Whether records are being scrubbed by :func:`install_log_scrubbing`."""
    return _active is not None
