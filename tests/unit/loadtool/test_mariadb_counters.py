"""The bench's MariaDB figures per order, from two reads of the server's counters."""

from __future__ import annotations

from loadtool.mariadb_counters import per_order
from loadtool.mysql_admin import MySqlAdmin


def test_counter_growth_is_divided_by_the_orders_in_kilobytes_and_statements() -> None:
    before = {"Innodb_os_log_written": 1_000_000, "Questions": 500}
    after = {"Innodb_os_log_written": 1_000_000 + 100 * 8 * 1024, "Questions": 500 + 700}
    assert per_order(before, after, 100) == {
        "redo_kb_per_order": 8.0,
        "statements_per_order": 7.0,
    }


def test_a_failed_read_or_a_phase_without_orders_gives_no_figures() -> None:
    counted = {"Innodb_os_log_written": 1, "Questions": 1}
    assert per_order(None, counted, 10) is None
    assert per_order(counted, None, 10) is None
    assert per_order(counted, counted, 0) is None


def test_the_administrator_comes_from_the_bench_settings() -> None:
    env = {
        "BENCH_MYSQL_HOST": "db",
        "BENCH_MYSQL_PORT": "3307",
        "BENCH_MYSQL_USER": "admin",
        "BENCH_MYSQL_PASSWORD": "pw",
    }
    assert MySqlAdmin.from_env(env) == MySqlAdmin("db", 3307, "admin", "pw")
    assert MySqlAdmin.from_env({}) == MySqlAdmin()
