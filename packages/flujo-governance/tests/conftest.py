"""Fixtures shared by flujo-governance's tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flujo_governance.logs import uninstall_log_scrubbing

# The helper modules (gov_testkit, gov_corpus, gov_generated) sit beside the tests; nox runs
# pytest with --import-mode=importlib, which does not put test folders on sys.path.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(autouse=True)
def _no_log_scrubbing_left_behind() -> Iterator[None]:
    """The pii factory installs a process-wide log record factory: remove it after each test."""
    yield
    uninstall_log_scrubbing()
