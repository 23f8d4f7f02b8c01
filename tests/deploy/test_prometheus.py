"""promtool accepts the Prometheus configuration and the alert rules; the required alerts exist."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.deploy.tools import require_binary

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool", "prometheus")
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=60, cwd=PROMETHEUS_DIR
    )


def test_promtool_check_config_passes() -> None:
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules_passes() -> None:
    result = _promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_every_process_and_rabbitmq() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    assert {
        "order-service:8080",
        "analytics-api:8081",
        "analytics-consumer:8083",
        "notification-worker:8082",
        "rabbitmq:15692",
    } <= targets


def test_the_alerts_the_operators_need_are_defined() -> None:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert "dlq" in alerts["DeadLetterQueueNotEmpty"]
    assert "outbox_oldest_pending_age_seconds" in alerts["OutboxBacklogTooOld"]
    assert "rabbitmq_queue_messages_ready" in alerts["ConsumerLagHigh"]
    assert "up{" in alerts["ServiceDown"]
    assert "order_service_http_requests_total" in alerts["OrderApiErrorRateHigh"]
