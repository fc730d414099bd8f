"""Fixtures of flujo-openapi's tests (defined in ``openapi_testlib``, a uniquely named module)."""

from __future__ import annotations

import sys
from pathlib import Path

# The tests run in pytest's importlib mode (several packages' tests at once): make the
# helper module importable by its unique name.
sys.path.insert(0, str(Path(__file__).parent))

from openapi_testlib import generated_corpus, loopback_api

__all__ = ["generated_corpus", "loopback_api"]
