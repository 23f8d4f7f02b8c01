"""The alert rules behave as meant (promtool's rule unit tests) and `make observe`'s local
Prometheus scrapes the processes `make run` starts, with the same rules."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from analytics_service.settings import AnalyticsSettings
from notification_worker.settings import NotificationSettings
from order_service.settings import OrderSettings
from tests.deploy.tools import require_binary

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULE_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
LOCAL_CONFIG = PROMETHEUS_DIR / "prometheus.local.yml"


def _promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool", "prometheus")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def _alert_names() -> set[str]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_every_alert_fires_on_its_series_and_stays_quiet_otherwise_in_promtool() -> None:
    result = _promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_failing_rule_unit_test_makes_the_promtool_run_fail(tmp_path: Path) -> None:
    """Guards the test above: an expectation that does not hold must turn promtool red."""
    (tmp_path / "alerts.yml").write_text((PROMETHEUS_DIR / "alerts.yml").read_text())
    wrong = {
        "rule_files": ["alerts.yml"],
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": "order_service_broker_connected", "values": "1x10"}],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "OrderRelayDisconnected",
                        "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
                    }
                ],
            }
        ],
    }
    (tmp_path / "wrong.test.yml").write_text(yaml.safe_dump(wrong))
    result = _promtool("test", "rules", "wrong.test.yml", cwd=tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "OrderRelayDisconnected" in result.stdout + result.stderr


def test_every_alert_has_a_rule_test_where_it_fires_and_one_where_it_stays_quiet() -> None:
    tests = _load(RULE_TESTS)
    assert tests["rule_files"] == ["alerts.yml"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = _alert_names()
    assert alerts, "no alerts in alerts.yml"
    assert alerts - fires == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown quiet"
    assert (fires | quiet) - alerts == set(), "rule tests for alerts that do not exist"


def test_promtool_check_config_accepts_the_local_prometheus_config() -> None:
    result = _promtool("check", "config", LOCAL_CONFIG.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_local_prometheus_scrapes_the_default_ports_of_every_process_make_run_starts() -> None:
    config = _load(LOCAL_CONFIG)
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    analytics = AnalyticsSettings()
    assert targets["order-service"] == [f"127.0.0.1:{OrderSettings().http_port}"]
    assert targets["analytics-api"] == [f"127.0.0.1:{analytics.http_port}"]
    assert targets["analytics-consumer"] == [f"127.0.0.1:{analytics.consumer_http_port}"]
    assert targets["notification-worker"] == [f"127.0.0.1:{NotificationSettings().http_port}"]
    assert targets["rabbitmq"] == ["127.0.0.1:15692"]
    paths = {
        job["job_name"]: job.get("metrics_path", "/metrics") for job in config["scrape_configs"]
    }
    # Every process serves /metrics (common.http.metrics_handler); the alerts need RabbitMQ's
    # per-queue series, which a local broker's /metrics aggregates away.
    assert {paths[job] for job in targets if job != "rabbitmq"} == {"/metrics"}
    assert paths["rabbitmq"] == "/metrics/per-object"


def test_local_prometheus_has_the_rules_jobs_and_labels_of_the_compose_prometheus() -> None:
    local, compose = _load(LOCAL_CONFIG), _load(PROMETHEUS_DIR / "prometheus.yml")

    def jobs(config: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
        return {
            job["job_name"]: [sc.get("labels", {}) for sc in job["static_configs"]]
            for job in config["scrape_configs"]
        }

    assert local["rule_files"] == compose["rule_files"]
    assert jobs(local) == jobs(compose)
    assert local["global"] == compose["global"]
