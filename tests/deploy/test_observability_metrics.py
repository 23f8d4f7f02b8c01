"""Every metric a dashboard panel or an alert rule names is one the code exports (static check;
tests/e2e/test_dashboards_reference_exported_metrics.py checks the live /metrics endpoints)."""

from __future__ import annotations

import json

from tests.deploy.metrics_catalog import (
    DASHBOARDS_DIR,
    alert_queries,
    code_metrics,
    dashboard_queries,
    known_metrics,
    metric_names_in,
    referenced_metrics,
)


def test_promql_name_extraction_skips_functions_labels_and_keywords() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(a_seconds_bucket{route="/x"}'
        "[$__rate_interval]))) / clamp_min(sum(rate(b_total[5m])), 1e-9) > 0 "
        "and on (job) up{job=`x`} offset 5m"
    )
    assert metric_names_in(expr) == {"a_seconds_bucket", "b_total", "up"}


def test_the_four_dashboards_exist_and_use_the_provisioned_datasource() -> None:
    titles = set()
    for path in DASHBOARDS_DIR.glob("*.json"):
        dashboard = json.loads(path.read_text())
        titles.add(dashboard["title"])
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == "prometheus", (path.name, panel["title"])
    assert titles == {"Orders", "Event flow", "Revenue", "Notifications"}
    assert dashboard_queries(), "no panel queries found"
    assert alert_queries(), "no alert rules found"


def test_every_service_exports_metrics_found_in_its_code() -> None:
    exported = code_metrics()
    assert "order_service_orders_created_total" in exported["order_service"]
    assert all(exported.values()), {k: len(v) for k, v in exported.items()}


def test_every_dashboard_and_alert_metric_is_exported_by_a_service_or_rabbitmq() -> None:
    known = known_metrics()
    unknown = {
        name: sorted(where) for name, where in referenced_metrics().items() if name not in known
    }
    assert not unknown, (
        "dashboards/alerts name metrics that no service defines "
        f"(Metrics(<service>).counter/gauge/histogram) and RabbitMQ does not export: {unknown}"
    )
