"""Test helpers for Flujo users and plugin authors.

- :mod:`flujo.testing.models`: deterministic stand-ins for LLMs (:func:`scripted_model`,
  :func:`fixed_model`, :func:`call_tool`).
- :mod:`flujo.testing.fake_openai`: :class:`FakeOpenAIServer`, an OpenAI-compatible HTTP server
  on loopback, so tests exercise the real provider code.
- :mod:`flujo.testing.conformance`: suites a plugin's tests subclass
  (``GovernancePolicyConformance``, ``VectorStoreConformance``, ``SandboxConformance``,
  ``EvaluatorConformance``).
- :mod:`flujo.testing.cli`: :func:`run_flujo` (the real CLI in a subprocess), ``help_imports``.
- :mod:`flujo.testing.operations`: :class:`OperationRecorder`, a plugin recording the
  operations (``flujo.plugin.operation``) a plugin under test reports.
- :mod:`flujo.testing.state`: ``create_core_state`` (a database from before a plugin was
  installed) and ``sqlite_tables``.
- pytest fixtures, registered automatically when flujo-core is installed:
  ``flujo_plugin_manager``, ``registered_plugin``, ``flujo_config``, ``fake_openai``.

Import from the submodules; this package imports nothing itself, so the pytest plugin stays
cheap in every test session.
"""
