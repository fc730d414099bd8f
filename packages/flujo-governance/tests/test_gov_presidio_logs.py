"""The presidio engine offline (blank spaCy pipeline, no network), a clear error when an engine
cannot load, and the log scrubbing."""

from __future__ import annotations

import importlib.util
import logging
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from gov_testkit import make_config

from flujo import ConfigError, Flujo, Pipeline, RunStatus, Step
from flujo.domain.errors import PluginError
from flujo_governance.engines.base import EngineUnavailableError
from flujo_governance.logs import (
    PIILogFilter,
    install_log_scrubbing,
    log_scrubbing_installed,
    uninstall_log_scrubbing,
)
from flujo_governance.pii import PIIScrubbingPolicy
from flujo_governance.settings import PIISettings

HAS_PRESIDIO = all(importlib.util.find_spec(m) for m in ("presidio_analyzer", "spacy"))
needs_presidio = pytest.mark.skipif(
    not HAS_PRESIDIO,
    reason="the presidio extra is not installed (pip install 'flujo-governance[presidio]')",
)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Any connection to a non-loopback address fails the test (and is recorded)."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost") and not isinstance(host, bytes):
            attempts.append(address)
            raise OSError(f"network disabled in this test: {address!r}")
        return real_connect(self, address)

    def no_dns(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise socket.gaierror("name resolution disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    return attempts


@needs_presidio
def test_presidio_engine_offline(no_network: list[Any]) -> None:
    policy = PIIScrubbingPolicy(PIISettings(engine="presidio", presidio_score_threshold=0.3))
    text = "mail ana.lopez@example.com, card 4111 1111 1111 1111, from 203.0.113.42"
    out = policy.scrubber.text(text, lambda kind, value: f"<{kind}>")
    assert "ana.lopez@example.com" not in out
    assert "4111 1111 1111 1111" not in out
    assert "<EMAIL>" in out
    assert "<CREDIT_CARD>" in out
    assert "<IP_ADDRESS>" in out
    assert no_network == []


@needs_presidio
async def test_presidio_engine_in_a_run(tmp_path: Path, no_network: list[Any]) -> None:
    config = make_config(
        tmp_path, '[governance]\npolicies = ["pii"]\n[governance.pii]\nengine = "presidio"\n'
    )
    seen: list[str] = []

    def echo(text: str) -> str:
        seen.append(text)
        return text

    async with Flujo(Pipeline([Step.from_callable(echo)]), config=config) as runner:
        result = await runner.run_async("write to ana.lopez@example.com")
    assert result.status is RunStatus.SUCCEEDED
    assert seen == ["write to <EMAIL>"]
    assert no_network == []


@needs_presidio
def test_missing_spacy_model_is_a_clear_error() -> None:
    with pytest.raises(EngineUnavailableError, match="presidio_model 'no_such_model_xx'"):
        PIIScrubbingPolicy(PIISettings(engine="presidio", presidio_model="no_such_model_xx"))


def test_presidio_without_the_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs whether the extra is installed or not (CI installs it): an import of a module
    whose ``sys.modules`` entry is ``None`` fails as if it were missing, and the engine's
    cache of built analyzers is emptied so nothing skips the import."""
    from flujo_governance.engines import presidio

    monkeypatch.setattr(presidio, "_ANALYZERS", {})
    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)
    with pytest.raises(EngineUnavailableError, match=r"flujo-governance\[presidio\]"):
        PIIScrubbingPolicy(PIISettings(engine="presidio"))


async def test_unloadable_engine_fails_the_start_not_silently(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        '[governance]\npolicies = ["pii"]\n[governance.pii]\nengine = "presidio"\n'
        'presidio_model = "no_such_model_xx"\n',
    )
    runner: Flujo = Flujo(Pipeline([Step.from_callable(str.upper, name="up")]), config=config)
    with pytest.raises((ConfigError, PluginError), match="presidio"):
        await runner.run_async("x")
    await runner.aclose()


def test_bad_custom_pattern_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid regex"):
        make_config(tmp_path, '[[governance.pii.patterns]]\nname = "X"\nregex = "("\n')
    with pytest.raises(ConfigError, match="wrods"):
        make_config(tmp_path, '[governance.tools]\nwrods = ["x"]\n')


def test_record_factory_scrubs_every_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    install_log_scrubbing(PIIScrubbingPolicy())
    assert log_scrubbing_installed()
    log = logging.getLogger("tests.governance.logs")
    log.info("user %s paid with %s", "ana@example.com", "4111 1111 1111 1111")
    try:
        raise ValueError("bad key AKIAIOSFODNN7EXAMPLE")
    except ValueError:
        log.exception("failed for %s", {"email": "bob@example.org"})
    uninstall_log_scrubbing()
    log.info("after: ana@example.com")
    assert "user <EMAIL> paid with <CREDIT_CARD>" in caplog.text
    assert "failed for {'email': '<EMAIL>'}" in caplog.text
    assert "bad key <AWS_KEY>" in caplog.text
    assert "AKIAIOSFODNN7EXAMPLE" not in caplog.text
    assert "after: ana@example.com" in caplog.text  # uninstalled


def test_filter_on_a_handler() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "to %s", ("a@b.io",), None)
    assert PIILogFilter(PIIScrubbingPolicy()).filter(record) is True
    assert record.getMessage() == "to <EMAIL>"


def test_factory_installs_log_scrubbing_unless_disabled(tmp_path: Path) -> None:
    config = make_config(tmp_path, "[governance.pii]\nscrub_logs = false\n")
    assert config.plugin_manager is not None
    config.plugin_manager.registry.create("policies", "pii", config)
    assert not log_scrubbing_installed()
    config = make_config(tmp_path, "")
    assert config.plugin_manager is not None
    config.plugin_manager.registry.create("policies", "pii", config)
    assert log_scrubbing_installed()


def test_logging_while_scrubbing_does_not_recurse(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    inner = logging.getLogger("tests.governance.engine")

    def noisy(text: str, run_id: str | None) -> str:
        inner.debug("scrubbing %d characters", len(text))
        return text.replace("secret", "<X>")

    install_log_scrubbing(noisy)
    logging.getLogger("tests.governance.outer").info("a secret")
    uninstall_log_scrubbing()
    assert "a <X>" in caplog.text
    assert "scrubbing 8 characters" in caplog.text


def test_presidio_entity_names_need_the_presidio_engine(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown entity 'PERSON'"):
        make_config(tmp_path, '[governance.pii]\nentities = ["EMAIL", "PERSON"]\n')
    make_config(tmp_path, '[governance.pii]\nengine = "presidio"\nentities = ["EMAIL", "PERSON"]\n')


@needs_presidio
def test_presidio_entity_selection(no_network: list[Any]) -> None:
    policy = PIIScrubbingPolicy(PIISettings(engine="presidio", entities=["EMAIL"]))
    out = policy.scrubber.text("ana@example.com from 203.0.113.42", lambda k, v: f"<{k}>")
    assert out == "<EMAIL> from 203.0.113.42"
