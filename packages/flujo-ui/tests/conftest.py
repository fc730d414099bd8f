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


@pytest.fixture(params=["sqlite", "postgresql"])
def state_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state database URI for each backend: the server tests run against both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    uri: str = request.getfixturevalue("flujo_postgres_uri")
    return uri
