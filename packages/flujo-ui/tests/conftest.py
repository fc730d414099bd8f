"""Fixtures of the flujo-ui tests (helpers live in ``ui_testkit``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The helpers module sits next to the tests; make it importable in every pytest import mode
# (nox runs with --import-mode=importlib, which does not put test folders on sys.path).
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def state_uri(flujo_state_uri: str) -> str:
    """The state database URI for each backend: the server tests run against both (the pytest
    plugin's ``flujo_state_uri``, by this suite's shorter name)."""
    return flujo_state_uri
