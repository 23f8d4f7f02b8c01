from __future__ import annotations

import pytest

from loadtool.stats import percentile, rate, summarize


def test_percentile_of_nothing_is_zero() -> None:
    assert percentile([], 99) == 0.0


def test_percentile_uses_nearest_rank_so_it_is_always_an_observed_value() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0


def test_percentile_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_is_in_milliseconds_and_ignores_input_order() -> None:
    summary = summarize([0.003, 0.001, 0.002, 0.010])
    assert summary.count == 4
    assert summary.min_ms == pytest.approx(1.0)
    assert summary.max_ms == pytest.approx(10.0)
    assert summary.p50_ms == pytest.approx(2.0)
    assert summary.p99_ms == pytest.approx(10.0)
    assert summary.mean_ms == pytest.approx(4.0)


def test_empty_summary_is_all_zero() -> None:
    assert summarize([]).as_dict()["count"] == 0
    assert summarize([]).p99_ms == 0.0


def test_rate_never_divides_by_zero() -> None:
    assert rate(10, 0) == 0.0
    assert rate(10, 2) == 5.0
