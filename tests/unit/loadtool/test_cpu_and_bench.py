"""CPU accounting from a fake /proc, Procfile parsing, the audit's final-state rules and the
benchmark's pure decisions (kept up, ladder, headline)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from loadtool import cpu
from loadtool.audit import SAGA_FINAL_STATES, AnalyticsRecord, evaluate, notified_final
from loadtool.bench import (
    SAGA_OFF,
    SAGA_ON,
    BenchConfig,
    build_parser,
    config_from_args,
    headline,
    kept_up,
    ladder,
)
from loadtool.runner import AcceptedOrder
from loadtool.system import exit_codes, procfile_env

PROCFILE = """\
# comment
order: RABBITMQ_URL=amqp://o:p@h:5672/orderflow exec .venv/bin/python -m order_service
analytics-api: RABBITMQ_URL=amqp://a:p@h/orderflow exec .venv/bin/python -m analytics_service api
analytics-consumer: X=1 exec .venv/bin/python -m analytics_service consumer
"""


def _proc(root: Path, pid: int, ppid: int, comm: str, ticks: int, cmdline: list[str]) -> None:
    d = root / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    fields = ["S", str(ppid)] + ["0"] * 9 + [str(ticks), "0"] + ["0"] * 10
    (d / "stat").write_text(f"{pid} ({comm}) {' '.join(fields)}\n")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in cmdline) + b"\0")


def _machine(root: Path, busy: int, idle: int) -> None:
    (root / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4\n")


def _tree(root: Path, scale: int) -> None:
    _machine(root, 1000 * scale, 500)
    # make run: `make` -> the runner -> one child per Procfile line (`/bin/sh -c "... exec
    # python -m ..."`: the shell execs, so each child of the runner is the service itself).
    _proc(root, 9, 1, "make", 1 * scale, ["make", "run"])
    runner = ["/abs/.venv/bin/python", "deploy/procfile_run.py", "Procfile"]
    _proc(root, 10, 9, "python", 1 * scale, runner)
    _proc(root, 12, 10, "python", 100 * scale, ["/abs/.venv/bin/python", "-m", "order_service"])
    _proc(root, 13, 12, "python", 50 * scale, ["/abs/.venv/bin/python", "-m", "order_service"])
    api = [".venv/bin/python", "-m", "analytics_service", "api"]
    _proc(root, 15, 10, "python", 7 * scale, api)
    _proc(root, 16, 10, "python", 9 * scale, [*api[:-1], "consumer"])
    # A child still a shell (not yet exec'd, or a line without exec): counted with the runner.
    _proc(root, 17, 10, "sh", 2 * scale, ["/bin/sh", "-c", "exec sleep 1"])
    _proc(root, 20, 1, "mariadbd", 30 * scale, ["/usr/sbin/mariadbd"])
    _proc(root, 21, 1, "beam.smp", 40 * scale, ["/usr/lib/erlang/bin/beam.smp", "-W"])
    _proc(root, 22, 1, "redis-server", 2 * scale, ["redis-server", "127.0.0.1:6379"])
    _proc(root, 23, 1, "python", 3 * scale, ["/other/.venv/bin/python", "-m", "order_service"])
    _proc(root, 30, 1, "python", 4 * scale, ["python", "-m", "loadtool.bench"])


def test_read_stat_handles_spaces_and_parentheses_in_comm(tmp_path):
    _proc(tmp_path, 7, 3, "a (b) c", 42, ["x"])
    stat = cpu.read_stat(7, str(tmp_path))
    assert stat == cpu.ProcStat(7, 3, "a (b) c", 42)
    assert cpu.read_stat(8, str(tmp_path)) is None


def test_procfile_commands_drop_env_and_exec():
    commands = cpu.procfile_commands(PROCFILE)
    assert commands["order"] == [".venv/bin/python", "-m", "order_service"]
    assert commands["analytics-consumer"][-1] == "consumer"
    assert procfile_env(PROCFILE)["order"] == {"RABBITMQ_URL": "amqp://o:p@h:5672/orderflow"}


def test_discover_finds_services_below_the_runner_and_infra_by_name(tmp_path):
    _tree(tmp_path, 1)
    found = cpu.discover(
        runner_pid=10,
        services=cpu.procfile_commands(PROCFILE),
        loadgen_pid=30,
        proc=str(tmp_path),
    )
    assert found["order"] == [12, 13]  # its forked worker too; not the other tree's pid 23
    assert found["analytics-api"] == [15]
    assert found["analytics-consumer"] == [16]
    assert found[cpu.RUNNER] == [10, 17]
    assert found["mariadb"] == [20]
    assert found["rabbitmq"] == [21]
    assert found["redis"] == [22]
    assert found[cpu.LOADGEN] == [30]


def test_cpu_delta_per_order_total_and_machine(tmp_path):
    _tree(tmp_path, 1)
    proc = str(tmp_path)
    found = cpu.discover(
        runner_pid=10, services=cpu.procfile_commands(PROCFILE), loadgen_pid=30, proc=proc
    )
    before = cpu.snapshot(found, 0.0, proc)
    _tree(tmp_path, 3)  # every counter tripled: the delta is twice the first reading
    after = cpu.snapshot(found, 2.0, proc)
    usage = cpu.cpu_delta(before, after, orders=10, clk_tck=100)
    assert usage["order"]["cpu_s"] == 3.0  # (100 + 50) * 2 ticks
    assert usage["order"]["ms_per_order"] == 300.0
    assert usage["order"]["cores"] == 1.5
    assert usage[cpu.RUNNER]["cpu_s"] == 0.06  # (1 + 2) * 2 ticks
    components = 150 + 3 + 7 + 9 + 30 + 40 + 2 + 4
    assert usage[cpu.TOTAL]["cpu_s"] == round(components * 2 / 100, 3)
    assert usage["machine (all processes)"]["cpu_s"] == 20.0
    assert usage["other processes"]["cpu_s"] == round(20.0 - components * 2 / 100, 3)


def test_a_process_gone_mid_phase_counts_up_to_its_last_reading(tmp_path):
    _tree(tmp_path, 1)
    proc = str(tmp_path)
    before = cpu.snapshot({"x": [12, 99]}, 0.0, proc)
    after = cpu.snapshot({"x": [12, 99]}, 1.0, proc)
    assert cpu.cpu_delta(before, after, 1, clk_tck=100)["x"]["cpu_s"] == 0.0


def test_find_runner_is_the_ancestor_running_procfile_run(tmp_path):
    _tree(tmp_path, 1)
    assert cpu.find_runner(13, proc=str(tmp_path)) == 10  # order's forked worker -> the runner
    assert cpu.find_runner(15, proc=str(tmp_path)) == 10
    assert cpu.find_runner(23, proc=str(tmp_path)) is None  # not started by the runner


def test_exit_codes_from_the_runners_last_line():
    log = (
        "procfile_run: started order (12), analytics-api (15), notifications (18)\n"
        '{"service": "order", "event": "stopped"}\n'
        "procfile_run: analytics-api exited with -9; stopping the others\n"
        "procfile_run: exit codes {'order': 0, 'analytics-api': -9, 'other': 3}\n"
    )
    assert exit_codes(log, ["order", "analytics-api", "notifications"]) == {
        "order": 0,
        "analytics-api": -9,
        "notifications": None,
    }
    killed = "procfile_run: started order (12)\n"  # the runner was killed: nothing printed
    assert exit_codes(killed, ["order"]) == {"order": None}
    assert exit_codes("procfile_run: exit codes {'order': oops}\n", ["order"]) == {"order": None}


def test_notified_final_needs_the_final_notice_on_every_channel():
    assert notified_final({"log": 1, "log:confirmed": 1}, SAGA_FINAL_STATES)
    assert not notified_final({"log": 1}, SAGA_FINAL_STATES)
    assert not notified_final({"log": 1, "smtp": 1, "log:confirmed": 1}, SAGA_FINAL_STATES)
    assert not notified_final({"log:confirmed": 1}, SAGA_FINAL_STATES)


def test_evaluate_with_final_states_flags_unfinished_and_missing_final_notices():
    accepted = [AcceptedOrder(i, Decimal("1.00"), "USD") for i in ("a", "b", "c")]
    analytics = [
        AnalyticsRecord("a", Decimal("1.00"), "USD", 1.0, 2.0, "confirmed"),
        AnalyticsRecord("b", Decimal("1.00"), "USD", 1.0, 2.0, "paid"),
        AnalyticsRecord("c", Decimal("1.00"), "USD", 1.0, 2.0, "payment_failed"),
    ]
    sends = [
        ("a", {"log": 1, "log:confirmed": 1}),
        ("b", {"log": 1}),
        ("c", {"log": 1, "log:payment_failed": 2}),
    ]
    report = evaluate(accepted, analytics, sends, final_states=SAGA_FINAL_STATES)
    assert report.unfinished == ["b"]
    assert report.final_notifications_missing == ["b"]
    assert report.doubled == ["c"]
    assert report.lost == []
    assert not report.ok
    plain = evaluate(accepted, analytics, sends)
    assert plain.unfinished == [] and not plain.final_checked


def _phase(name, offered, accepted_per_s, drain, ok=True, errors=0, p99=10.0):
    phase = {
        "name": name,
        "load": {
            "offered_rate": offered,
            "accepted_per_s": accepted_per_s,
            "error_count": errors,
            "latency_ms": {"p50_ms": 1.0, "p99_ms": p99},
        },
        "audit": {"ok": ok, "e2e_latency_ms": {"p99_ms": 150.0}},
        "drain_s": drain,
        "done_orders_per_s": accepted_per_s,
        "cpu": {"pipeline": {"ms_per_order": 5.0}},
    }
    phase["kept_up"] = kept_up(phase, 3.0)
    return phase


def test_kept_up_needs_a_clean_audit_a_short_drain_and_the_offered_rate():
    assert kept_up(_phase("r", 100, 99, 1.0), 3.0)
    assert not kept_up(_phase("r", 100, 99, 4.0), 3.0)
    assert not kept_up(_phase("r", 100, 80, 1.0), 3.0)
    assert not kept_up(_phase("r", 100, 99, 1.0, ok=False), 3.0)
    assert not kept_up(_phase("r", 100, 99, None), 3.0)


def test_ladder_is_ascending_with_the_e2e_rate_for_the_saga():
    cfg = BenchConfig(ladder=(0.5, 1.0), climb=0)
    assert ladder(cfg, 400, saga=True) == [200, 300, 400]
    assert ladder(cfg, 400, saga=False) == [200, 400]
    assert ladder(BenchConfig(rates=(700.0, 500.0)), 1, saga=False) == [500, 700]


def test_ladder_climbs_past_its_top_so_a_top_rung_that_kept_up_is_not_the_figure():
    cfg = BenchConfig(ladder=(0.5, 1.0), climb=2)
    assert ladder(cfg, 800, saga=False) == [400, 800, 920, 1058]
    assert ladder(cfg, 200, saga=True) == [100, 200, 300, 345, 397]


def test_headline_takes_the_highest_rate_that_kept_up():
    on = {
        "name": SAGA_ON,
        "phases": [
            _phase("saturation", None, 900, 5.0, p99=40.0),
            _phase("rate-300", 300, 299, 1.0),
            _phase("rate-450", 450, 449, 2.0),
            _phase("rate-600", 600, 500, 9.0),
        ],
        "get": {"per_s": 7000.0},
    }
    off = {"name": SAGA_OFF, "phases": [_phase("rate-1000", 1000, 998, 1.0)]}
    rows = headline({"configurations": [on, off], "ceiling": {}})
    assert rows["sustained_orders_per_s_saga_on"]["system"] == 449
    assert rows["sustained_orders_per_s_saga_on"]["phase"] == "rate-450"
    assert rows["sustained_orders_per_s_saga_off"]["system"] == 998
    assert rows["accepted_post_per_s_c16"]["system"] == 900
    assert rows["post_p99_ms_c16"]["system"] == 40.0
    assert rows["e2e_p99_ms_at_300_saga_on"]["system"] == 150.0
    assert rows["get_cached_per_s"]["system"] == 7000.0
    assert rows["cpu_ms_per_order_saga_on"]["system"] == 5.0
    assert rows["cpu_ms_per_order_saga_on"]["must"] == "<= 6"


def test_quick_bench_waits_for_quiet_far_less_than_its_test_allows() -> None:
    # The CI smoke has 480 s in all; a machine that never goes quiet must not spend them here.
    quick = config_from_args(build_parser().parse_args(["--quick"]))
    full = config_from_args(build_parser().parse_args([]))
    assert quick.quiet_timeout <= 15.0
    assert full.quiet_timeout >= 60.0


def test_open_loop_rungs_have_their_own_connection_count() -> None:
    cfg = config_from_args(build_parser().parse_args(["--concurrency", "8"]))
    assert (cfg.concurrency, cfg.rate_concurrency) == (8, 64)
    cfg = config_from_args(build_parser().parse_args(["--rate-concurrency", "128"]))
    assert (cfg.concurrency, cfg.rate_concurrency) == (16, 128)
