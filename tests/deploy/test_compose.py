"""docker-compose.yml validates offline and wires the system as docs/operations.md says."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import require_binary

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = {
    "order-service": 8080,
    "analytics-api": 8081,
    "analytics-consumer": 8083,
    "notification-worker": 8082,
}
ONE_SHOT = {"order-migrate", "analytics-migrate"}
EXPECTED = {
    "order-db",
    "analytics-db",
    "redis",
    "rabbitmq",
    "prometheus",
    "grafana",
    "jaeger",
    *APP_SERVICES,
    *ONE_SHOT,
}


def _config(*extra: str) -> dict[str, Any]:
    binary = require_binary("docker-compose", "docker-compose")
    result = subprocess.run(
        [binary, "-f", str(COMPOSE), "--project-directory", str(ROOT), *extra, "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return _config()


def test_compose_file_validates_with_docker_compose_config(config: dict[str, Any]) -> None:
    assert set(config["services"]) == EXPECTED


def test_compose_file_validates_with_the_example_env_file() -> None:
    rendered = _config("--env-file", str(ROOT / ".env.example"))
    url = rendered["services"]["order-service"]["environment"]["RABBITMQ_URL"]
    assert url.startswith("amqp://order-service:")


def test_every_long_running_service_has_a_healthcheck(config: dict[str, Any]) -> None:
    missing = [
        name
        for name, svc in config["services"].items()
        if name not in ONE_SHOT and "healthcheck" not in svc
    ]
    assert not missing


def test_dependents_wait_for_healthy_or_completed_dependencies(config: dict[str, Any]) -> None:
    for name, svc in config["services"].items():
        for dep, cond in svc.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert cond["condition"] == expected, f"{name} -> {dep}"
    for name in APP_SERVICES:
        deps = config["services"][name]["depends_on"]
        assert "rabbitmq" in deps and "redis" in deps, name


def test_only_user_facing_ports_are_published_on_loopback(config: dict[str, Any]) -> None:
    published = {}
    for name, svc in config["services"].items():
        for port in svc.get("ports", []):
            if isinstance(port, str):  # docker-compose v1 prints "127.0.0.1:8080:8080/tcp"
                host_ip, _, target = port.split("/")[0].split(":")
                port = {"host_ip": host_ip, "target": int(target)}
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes on all interfaces"
            published[name] = int(port["target"])
    assert published == {
        "order-service": 8080,
        "analytics-api": 8081,
        "notification-worker": 8082,
        "rabbitmq": 15672,
        "prometheus": 9090,
        "grafana": 3000,
        "jaeger": 16686,
    }


def test_each_service_connects_to_rabbitmq_as_its_own_user(config: dict[str, Any]) -> None:
    users = {
        name: config["services"][name]["environment"]["RABBITMQ_URL"].split("//")[1].split(":")[0]
        for name in APP_SERVICES
    }
    assert users == {
        "order-service": "order-service",
        "analytics-api": "analytics-service",
        "analytics-consumer": "analytics-service",
        "notification-worker": "notification-worker",
    }
    assert all(
        config["services"][n]["environment"]["RABBITMQ_URL"].endswith("/orderflow")
        for n in APP_SERVICES
    )


def test_services_listen_on_all_interfaces_inside_their_containers(
    config: dict[str, Any],
) -> None:
    hosts = {
        "order-service": "ORDER_HTTP_HOST",
        "analytics-api": "ANALYTICS_HTTP_HOST",
        "analytics-consumer": "ANALYTICS_CONSUMER_HTTP_HOST",
        "notification-worker": "NOTIFY_HTTP_HOST",
    }
    for name, var in hosts.items():
        assert config["services"][name]["environment"][var] == "0.0.0.0", name


def test_the_two_databases_are_separate_containers_with_separate_users(
    config: dict[str, Any],
) -> None:
    order = config["services"]["order-db"]["environment"]
    analytics = config["services"]["analytics-db"]["environment"]
    assert order["SERVICE_DB_USER"] != analytics["SERVICE_DB_USER"]
    assert order["SERVICE_DB_NAME"] != analytics["SERVICE_DB_NAME"]
    assert "@order-db:" in config["services"]["order-service"]["environment"]["ORDER_DATABASE_URL"]
    assert (
        "@analytics-db:"
        in config["services"]["analytics-consumer"]["environment"]["ANALYTICS_DATABASE_URL"]
    )


def test_data_lives_in_named_volumes(config: dict[str, Any]) -> None:
    assert {
        "order-db-data",
        "analytics-db-data",
        "redis-data",
        "rabbitmq-data",
        "prometheus-data",
        "grafana-data",
    } <= set(config["volumes"])


def test_every_process_exports_its_traces_to_jaeger(config: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = config["services"][name]["environment"]
        assert env["OTEL_TRACES_EXPORTER"] == "otlp", name
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318", name
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf", name
    datasources = yaml.safe_load(
        (ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "jaeger.yml").read_text()
    )["datasources"]
    assert [(d["type"], d["url"]) for d in datasources] == [("jaeger", "http://jaeger:16686")]


def test_dockerfile_runs_as_non_root_from_a_slim_multi_stage_build() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) >= 2
    assert "slim" in text
    assert "USER 10001" in text
