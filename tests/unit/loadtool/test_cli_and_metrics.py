from __future__ import annotations

from collections import Counter

from loadtool.audit import AuditReport
from loadtool.cli import (
    EXIT_AUDIT_FAILED,
    EXIT_OK,
    EXIT_REQUEST_ERRORS,
    EXIT_USAGE,
    build_parser,
    exit_code,
    main,
    options_from_args,
)
from loadtool.metrics import CounterSampler, parse_counters, sum_counter
from loadtool.runner import LoadResult


def options(*argv: str):
    return options_from_args(build_parser().parse_args(list(argv)))


def test_defaults_send_a_thousand_orders_and_audit() -> None:
    opts = options()
    assert opts.load.count == 1000
    assert opts.audit is not None
    assert opts.audit.notifications_url == "http://127.0.0.1:8082"


def test_duration_without_count_runs_until_the_duration() -> None:
    opts = options("--duration", "5", "--skip-notifications", "--no-audit")
    assert opts.load.count is None
    assert opts.audit is None


def test_invalid_arguments_exit_with_usage() -> None:
    assert main(["--concurrency", "0"]) == EXIT_USAGE
    assert main(["--min-quantity", "5", "--max-quantity", "1"]) == EXIT_USAGE


def test_exit_code_fails_on_lost_and_on_errors_only_when_asked() -> None:
    result = LoadResult(errors=Counter({"503": 1}))
    assert exit_code(options(), result, AuditReport()) == EXIT_OK
    assert exit_code(options("--fail-on-errors"), result, AuditReport()) == EXIT_REQUEST_ERRORS
    assert exit_code(options(), result, AuditReport(lost=["x"])) == EXIT_AUDIT_FAILED
    assert exit_code(options(), result, AuditReport(doubled=["x"])) == EXIT_AUDIT_FAILED


PAGE = """# HELP analytics_service_events_consumed_total x
# TYPE analytics_service_events_consumed_total counter
analytics_service_events_consumed_total{event_type="OrderCreated",outcome="applied"} 10.0
analytics_service_events_consumed_total{event_type="OrderCreated",outcome="duplicate"} 2.0
analytics_service_events_consumed_created{event_type="OrderCreated"} 1.7e9
other_total 5
"""


def test_counters_are_summed_over_labels_with_an_optional_filter() -> None:
    samples = parse_counters(PAGE)
    assert sum_counter(samples, "analytics_service_events_consumed_total") == 12.0
    assert (
        sum_counter(samples, "analytics_service_events_consumed_total", 'outcome="applied"') == 10.0
    )
    assert sum_counter(samples, "other_total") == 5.0


def test_sampler_rates() -> None:
    s = CounterSampler("http://unused", "x")
    s.points = [(0.0, 0.0), (1.0, 0.0), (2.0, 100.0), (3.0, 300.0), (4.0, 300.0), (5.0, 300.0)]
    assert s.total() == 300.0
    assert s.active_rate() == 150.0  # 300 events between t=1 and t=3
    assert s.peak_rate(window=1.0) == 200.0
