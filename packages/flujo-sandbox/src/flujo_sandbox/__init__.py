"""flujo-sandbox: run LLM-generated code safely, anywhere, with no Docker daemon required.

Loaded by Flujo through the ``flujo.plugins`` entry point, which names
:mod:`flujo_sandbox.plugin`. This module stays free of imports: Flujo imports it at every
startup. The backends live in :mod:`flujo_sandbox.local`, :mod:`flujo_sandbox.remote`,
:mod:`flujo_sandbox.docker_backend` and :mod:`flujo_sandbox.e2b_backend`; build the configured
one with :func:`flujo_sandbox.factory.build_sandbox`.
"""
