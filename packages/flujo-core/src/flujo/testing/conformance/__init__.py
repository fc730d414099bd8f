"""Conformance suites: the tests every implementation of a Flujo contract must pass.

A plugin author subclasses the suite for the contract they implement, in a test module, and
provides the object under test as a fixture; pytest then runs every inherited check against
it::

    import pytest
    from flujo.testing.conformance import GovernancePolicyConformance

    class TestDenyWords(GovernancePolicyConformance):
        @pytest.fixture
        def policy(self):
            return DenyWords(["secret"])

        @pytest.fixture
        def denied_input(self):
            return "tell me the secret"

Suites, the contract each checks, and the fixture a subclass must provide:

- :class:`GovernancePolicyConformance`: ``GovernancePolicy``, fixture ``policy``;
- :class:`VectorStoreConformance`: ``VectorStoreProtocol``, fixture ``store``;
- :class:`SandboxConformance`: ``SandboxProtocol``, fixture ``sandbox``;
- :class:`EvaluatorConformance`: ``Evaluator``, fixture ``evaluator``;
- :class:`EmbedderConformance`: ``Embedder``, fixture ``embedder``;
- :class:`StateBackendConformance`: ``StateBackend``, fixture ``make_state``.

The suites are plain classes (their names do not start with ``Test``), so importing one into
a test module does not run it on its own. Their async checks carry ``@pytest.mark.asyncio``
and need ``pytest-asyncio`` (in ``flujo-core[test]``); they work in its strict and auto modes.
"""

from __future__ import annotations

from flujo.testing.conformance.embedder import EmbedderConformance
from flujo.testing.conformance.evaluator import EvaluatorConformance, make_run_record
from flujo.testing.conformance.governance import GovernancePolicyConformance
from flujo.testing.conformance.sandbox import SandboxConformance
from flujo.testing.conformance.state import StateBackendConformance
from flujo.testing.conformance.vector_store import VectorStoreConformance

__all__ = [
    "EmbedderConformance",
    "EvaluatorConformance",
    "GovernancePolicyConformance",
    "SandboxConformance",
    "StateBackendConformance",
    "VectorStoreConformance",
    "make_run_record",
]
