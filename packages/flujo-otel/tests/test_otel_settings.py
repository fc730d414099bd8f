"""``[otel]`` and the ``OTEL_*`` variables: which wins, what is parsed, what is refused."""

from __future__ import annotations

from typing import Any

import pytest
from flujo_otel.plugin import SERVICE
from flujo_otel.settings import OtelSettings, resolve

from flujo import ConfigError, Flujo, Pipeline, Step


def test_installed_alone_traces_nothing() -> None:
    assert resolve(OtelSettings(), {}).enabled is False


def test_two_lines_of_config_turn_it_on_with_the_traces_path() -> None:
    resolved = resolve(OtelSettings(endpoint="http://127.0.0.1:6006"), {})
    assert resolved.enabled
    assert resolved.endpoint == "http://127.0.0.1:6006/v1/traces"
    assert resolved.protocol == "http/protobuf"
    assert resolved.service_name == "flujo"
    assert resolved.sample_ratio == 1.0
    full = resolve(OtelSettings(endpoint="https://x.example/api/public/otel/v1/traces/"), {})
    assert full.endpoint == "https://x.example/api/public/otel/v1/traces"


def test_the_standard_variables_fill_what_the_section_leaves_out() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Basic%20abc,x-team=ai",
        "OTEL_SERVICE_NAME": "support-bot",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
    }
    resolved = resolve(OtelSettings(), env)
    assert resolved.enabled
    assert resolved.endpoint == "http://collector:4318/v1/traces"
    assert resolved.headers == {"Authorization": "Basic abc", "x-team": "ai"}
    assert resolved.service_name == "support-bot"
    assert resolved.sample_ratio == 0.25
    # The traces-specific variable is used as it is, and beats the generic one.
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "http://other:9999/custom"
    assert resolve(OtelSettings(), env).endpoint == "http://other:9999/custom"


def test_the_section_wins_over_the_environment_key_by_key() -> None:
    env = {"OTEL_SERVICE_NAME": "from-env", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318"}
    resolved = resolve(OtelSettings(service_name="from-toml", sample_ratio=0.5), env)
    assert resolved.service_name == "from-toml"
    assert resolved.sample_ratio == 0.5
    assert resolved.endpoint == "http://env:4318/v1/traces"


def test_sdk_disabled_is_a_kill_switch_and_enabled_false_turns_it_off() -> None:
    on = OtelSettings(enabled=True, endpoint="http://a:1")
    assert resolve(on, {"OTEL_SDK_DISABLED": "true"}).enabled is False
    assert (
        resolve(OtelSettings(enabled=False), {"OTEL_EXPORTER_OTLP_ENDPOINT": "x"}).enabled is False
    )
    assert resolve(OtelSettings(enabled=True), {}).endpoint == "http://localhost:4318/v1/traces"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "OTEL_EXPORTER_OTLP_HEADERS"),
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
    ],
)
def test_bad_variables_are_one_line_errors_naming_the_variable(
    env: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        resolve(OtelSettings(), env)


def test_unknown_keys_in_the_section_fail_the_config(make_config: Any) -> None:
    with pytest.raises(ConfigError, match="endpont"):
        make_config('[otel]\nendpont = "http://x"\n')


async def test_a_runner_without_tracing_has_no_service(make_config: Any) -> None:
    pipeline = Pipeline([Step.from_callable(str.upper, name="up")])
    async with Flujo(pipeline, config=make_config("")) as runner:
        await runner.run_async("x")
        assert SERVICE not in runner.services
        assert "flujo-otel" in runner.runtime.idle_plugins  # off: its hooks are not called
    async with Flujo(pipeline, config=make_config()) as runner:
        await runner.run_async("x")
        assert SERVICE in runner.services
