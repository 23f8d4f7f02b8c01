"""The OTEL_* settings: off unless an exporter is named, and a bad value fails at start by name."""

from __future__ import annotations

import pytest

from common import tracing
from common.settings import Env, SettingsError
from common.tracing import TracingSettings


def settings(**environ: str) -> TracingSettings:
    return TracingSettings.from_env("order-service", Env(environ))


def test_tracing_is_off_unless_an_exporter_is_named():
    assert settings().exporter == "none"
    assert settings(OTEL_TRACES_EXPORTER="otlp", OTEL_SDK_DISABLED="true").exporter == "none"


def test_configuring_with_no_exporter_installs_nothing():
    tracing.configure_tracing("order-service", Env({}))
    assert not tracing.enabled()
    assert tracing.http_middleware() == []
    assert tracing.span("x") is tracing.NO_SPAN
    assert tracing.batch("x", iter(())) is tracing.NO_SPAN


def test_each_process_names_itself_unless_the_service_name_is_set():
    assert settings().service_name == "order-service"
    assert settings(OTEL_SERVICE_NAME="orders-eu").service_name == "orders-eu"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_TRACES_EXPORTER", "jaeger"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ("OTEL_TRACES_SAMPLER_ARG", "half"),
    ],
)
def test_a_bad_value_fails_naming_its_setting(name, value):
    with pytest.raises(SettingsError, match=name):
        settings(**{name: value})


def test_the_grpc_protocol_defaults_to_the_grpc_port():
    assert settings(OTEL_EXPORTER_OTLP_PROTOCOL="grpc").endpoint == "http://localhost:4317"
    assert settings().endpoint == "http://localhost:4318"
