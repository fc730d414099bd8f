"""Fixtures of the flujo-otel tests: a runner config whose spans go to an in-memory exporter
(and a test policy that scrubs, since a plugin's tests never need another plugin)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flujo_otel.plugin import OtelPlugin
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flujo import FlujoConfig
from flujo.config import load_config
from flujo.plugins.manager import PluginManager

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # nox runs --import-mode=importlib: make otel_testkit importable
    sys.path.insert(0, _HERE)


class KeptExporter(InMemorySpanExporter):
    """Keeps collecting after a runner's shutdown, so one test can run several runners."""

    def shutdown(self) -> None:
        pass


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return KeptExporter()


ConfigFactory = Callable[..., FlujoConfig]


@pytest.fixture
def make_config(tmp_path: Path, exporter: InMemorySpanExporter) -> ConfigFactory:
    """``make_config(toml="[otel]\\nenabled = true\\n", environ={})``: a config in
    ``tmp_path`` with flujo-otel exporting to ``exporter``."""

    def make(
        toml: str = "[otel]\nenabled = true\n", environ: dict[str, str] | None = None
    ) -> FlujoConfig:
        path = tmp_path / "flujo.toml"
        path.write_text('[state]\nuri = "sqlite:///.flujo/flujo.db"\n' + toml)
        manager = PluginManager(strict=True)
        manager.register(
            OtelPlugin(exporter=lambda resolved: exporter, environ=environ or {}), "flujo-otel"
        )
        return load_config(path, plugin_manager=manager, environ={})

    return make


@pytest.fixture(autouse=True)
def _agents_uninstrumented_after() -> Iterator[None]:
    """A traced runner turns on pydantic-ai's instrumentation for the process; undo it after
    each test so other packages' tests (in the integration session) run as they would alone."""
    yield
    from flujo_otel import tracing
    from pydantic_ai import Agent

    if tracing._installed:
        Agent.instrument_all(False)
        tracing._installed = False
