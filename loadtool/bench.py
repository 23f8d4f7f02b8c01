"""``python -m loadtool.bench``: the infrastructure ceiling and the real system, in one run.

1. Ceiling: raw aiomysql order+outbox transactions, raw aio-pika publish with pipelined confirms
   and consume with manual acks (scratch quorum queue), Redis GETs - all at the same concurrency.
2. The system (started here as subprocesses unless ``--use-running``): saturation (closed loop),
   then fixed offered rates (50 % of saturation, then each of ``--rates``), each audited end to
   end; then cached GET /orders/{id}. Consumer rates come from their /metrics counters.
3. A table of the headline figures, each with its ceiling and ratio; the whole run as JSON.

Ratios are system / ceiling: below 1 for throughput (the share of the bare ceiling reached),
above 1 for latency (how many times the bare cost). See docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from loadtool.audit import AuditConfig
from loadtool.ceiling import CeilingConfig, measure_ceiling
from loadtool.cli import install_uvloop, run_and_audit
from loadtool.client import HttpConnection, HttpError, parse_target
from loadtool.generator import GeneratorConfig, OrderGenerator
from loadtool.metrics import CounterSampler, parse_counters, sum_counter
from loadtool.processes import ProcessGroup
from loadtool.report import report_json
from loadtool.runner import LoadConfig, run_load
from loadtool.stats import rate, summarize

__all__ = ["BenchConfig", "main", "run_bench"]

# The targets of issue 8, printed next to what was measured.
TARGETS = {
    "sustained_orders_per_s": ">= 1200",
    "saturation_accepted_per_s": ">= 2000 at c=16",
    "saturation_post_p99_ms": "< 50 at c=16",
    "e2e_p99_ms_at_500": "< 200",
    "get_cached_per_s": ">= 8000",
}


@dataclass(frozen=True)
class BenchConfig:
    concurrency: int = 16
    ceiling_duration: float = 8.0
    saturation_duration: float = 20.0
    saturation_count: int | None = None  # quick mode: a fixed count instead of a duration
    rates: tuple[float, ...] = (500.0, 1200.0)
    rate_duration: float = 15.0
    rate_count: int | None = None
    get_duration: float = 8.0
    audit_timeout: float = 180.0
    use_running: bool = False
    skip_ceiling: bool = False
    # The issue 8 targets predate the fulfilment saga, which adds two events per order (paid,
    # confirmed) and their effects; run without it unless asked, and say which in the report.
    fulfilment: bool = False
    order_url: str = "http://127.0.0.1:8080"
    analytics_url: str = "http://127.0.0.1:8081"
    analytics_metrics_url: str = "http://127.0.0.1:8083/metrics"
    notifications_url: str = "http://127.0.0.1:8082"
    startup_timeout: float = 90.0
    log_dir: str | None = None


def _port_url(env: str, default: int) -> str:
    return f"http://127.0.0.1:{os.environ.get(env) or default}"


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    rates = tuple(float(r) for r in args.rates.split(",") if r.strip()) if args.rates else ()
    common: dict[str, Any] = {
        "concurrency": args.concurrency,
        "use_running": args.use_running,
        "skip_ceiling": args.skip_ceiling,
        "fulfilment": args.fulfilment,
        "audit_timeout": args.audit_timeout,
        "order_url": _port_url("ORDER_HTTP_PORT", 8080),
        "analytics_url": _port_url("ANALYTICS_HTTP_PORT", 8081),
        "analytics_metrics_url": _port_url("ANALYTICS_CONSUMER_HTTP_PORT", 8083) + "/metrics",
        "notifications_url": _port_url("NOTIFY_HTTP_PORT", 8082),
        "log_dir": args.log_dir,
    }
    if args.quick:
        return BenchConfig(
            ceiling_duration=2.0,
            saturation_count=400,
            rates=(),
            rate_count=200,
            get_duration=3.0,
            **{**common, "audit_timeout": min(args.audit_timeout, 60.0)},
        )
    return BenchConfig(
        ceiling_duration=args.ceiling_duration,
        saturation_duration=args.duration,
        rates=rates,
        rate_duration=args.rate_duration,
        get_duration=args.get_duration,
        **common,
    )


def _audit_config(cfg: BenchConfig) -> AuditConfig:
    return AuditConfig(
        analytics_url=cfg.analytics_url,
        notifications_url=cfg.notifications_url,
        timeout=cfg.audit_timeout,
        settle=0.5,
    )


async def _phase(
    cfg: BenchConfig,
    name: str,
    *,
    rate_: float | None,
    duration: float | None,
    count: int | None,
    seed: int,
) -> dict[str, Any]:
    load = LoadConfig(
        url=cfg.order_url,
        count=count,
        concurrency=cfg.concurrency,
        rate=rate_,
        duration=duration if count is None else None,
    )
    result, audit = await run_and_audit(load, GeneratorConfig(), _audit_config(cfg), seed=seed)
    data = report_json(result, audit)
    data["name"] = name
    data["_ids"] = [o.order_id for o in result.accepted]
    load_end = result.started_at + result.elapsed
    a = data.get("audit") or {}
    if a.get("last_applied_at"):
        drain = a["last_applied_at"] - load_end
        data["drain_s"] = round(drain, 3)
        data["kept_up"] = a["lost"] == 0 and drain <= max(2.0, 0.1 * result.elapsed)
    else:
        data["kept_up"] = False
    return data


async def _get_phase(cfg: BenchConfig, ids: Sequence[str]) -> dict[str, Any]:
    """Cached GET /orders/{id}: each id read once to fill the cache, then a closed loop."""
    target = parse_target(cfg.order_url)
    ids = list(ids[:1000])
    if not ids:
        return {"error": "no accepted orders to read"}
    warm = HttpConnection(target)
    for order_id in ids:
        with contextlib.suppress(HttpError):
            await warm.request("GET", f"/orders/{order_id}")
    warm.close()
    hits_before = await _cache_hits(cfg)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop_at = time.monotonic() + cfg.get_duration
    paths = [f"/orders/{i}" for i in ids]

    async def worker(offset: int) -> None:
        conn = HttpConnection(target)
        i = offset
        try:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    response = await conn.request("GET", paths[i % len(paths)])
                except HttpError as exc:
                    errors[exc.kind] = errors.get(exc.kind, 0) + 1
                    continue
                if response.status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[str(response.status)] = errors.get(str(response.status), 0) + 1
                i += 1
        finally:
            conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker(k * 37) for k in range(cfg.concurrency)))
    elapsed = time.perf_counter() - began
    hits_after = await _cache_hits(cfg)
    data: dict[str, Any] = {
        "per_s": round(rate(len(latencies), elapsed), 1),
        "ok": len(latencies),
        "errors": errors,
        "latency_ms": summarize(latencies).as_dict(),
    }
    if hits_before is not None and hits_after is not None:
        hits = hits_after[0] - hits_before[0]
        lookups = hits_after[1] - hits_before[1]
        data["cache_hit_ratio"] = round(hits / lookups, 4) if lookups else None
    return data


async def _cache_hits(cfg: BenchConfig) -> tuple[float, float] | None:
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            text = (await client.get(f"{cfg.order_url}/metrics")).text
    except httpx.HTTPError:
        return None
    samples = parse_counters(text)
    name = "order_service_cache_requests_total"
    return sum_counter(samples, name, 'result="hit"'), sum_counter(samples, name)


def _ratio(system: float | None, ceiling: float | None) -> float | None:
    if not system or not ceiling:
        return None
    return round(system / ceiling, 3)


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The figures issue 8 asks for, each with the ceiling it is compared to."""
    ceiling = result.get("ceiling", {})
    mysql = ceiling.get("mysql", {})
    rabbit = ceiling.get("rabbitmq", {})
    redis = ceiling.get("redis", {})
    mysql_tps = mysql.get("txn_per_s")
    mysql_p99 = (mysql.get("latency_ms") or {}).get("p99_ms")
    pipeline_ceiling = min((v for v in (mysql_tps, rabbit.get("publish_per_s")) if v), default=None)
    phases = result.get("phases", [])
    by_name = {p["name"]: p for p in phases}
    sat = by_name.get("saturation", {})
    half = by_name.get("half-saturation", {})
    at_500 = by_name.get("rate-500", half)
    kept = [p for p in phases if p.get("kept_up")]
    sustained_phase = max(kept, key=lambda p: p["audit"]["e2e_orders_per_s"], default=sat)
    sustained = (sustained_phase.get("audit") or {}).get("e2e_orders_per_s")
    e2e_p99_500 = ((at_500.get("audit") or {}).get("e2e_latency_ms") or {}).get("p99_ms")
    consumers = result.get("consumers", {})
    consume_ceiling = rabbit.get("consume_per_s")
    hop_p99 = (rabbit.get("hop_latency_ms") or {}).get("p99_ms")
    # The bare path of one order: its write, one broker hop, the analytics write.
    e2e_ceiling = round(2 * (mysql_p99 or 0) + (hop_p99 or 0), 3) or None
    get = result.get("get", {})

    def row(system: Any, ceil: Any, basis: str, target: str = "") -> dict[str, Any]:
        return {
            "system": system,
            "ceiling": ceil,
            "ratio": _ratio(system, ceil),
            "ceiling_basis": basis,
            "target": target,
        }

    return {
        "sustained_orders_per_s": {
            **row(
                sustained,
                pipeline_ceiling,
                "min(MySQL order+outbox txn/s, publish msg/s)",
                TARGETS["sustained_orders_per_s"],
            ),
            "phase": sustained_phase.get("name"),
            "kept_up": bool(sustained_phase.get("kept_up")),
        },
        "saturation_accepted_per_s": row(
            (sat.get("load") or {}).get("accepted_per_s"),
            mysql_tps,
            "MySQL txn/s",
            TARGETS["saturation_accepted_per_s"],
        ),
        "saturation_post_p99_ms": row(
            ((sat.get("load") or {}).get("latency_ms") or {}).get("p99_ms"),
            mysql_p99,
            "MySQL txn p99",
            TARGETS["saturation_post_p99_ms"],
        ),
        "post_p99_ms_at_half_saturation": row(
            ((half.get("load") or {}).get("latency_ms") or {}).get("p99_ms"),
            mysql_p99,
            "MySQL txn p99",
        ),
        "e2e_p99_ms_at_500": {
            **row(
                e2e_p99_500,
                e2e_ceiling,
                "2 x MySQL txn p99 + broker hop p99",
                TARGETS["e2e_p99_ms_at_500"],
            ),
            "phase": at_500.get("name"),
        },
        "get_cached_per_s": row(
            get.get("per_s"), redis.get("get_per_s"), "Redis GET/s", TARGETS["get_cached_per_s"]
        ),
        "analytics_events_per_s": row(
            consumers.get("analytics_peak_per_s"), consume_ceiling, "aio-pika consume+ack msg/s"
        ),
        "notification_events_per_s": row(
            consumers.get("notifications_peak_per_s"), consume_ceiling, "aio-pika consume+ack msg/s"
        ),
    }


async def _purge_fulfilment_queue() -> None:
    """With fulfilment off, the order service still declares its queue (so no OrderCreated is
    ever unroutable for a fulfilment process started later); drop the benchmark's copies so a
    later `make run` does not fulfil thousands of benchmark orders."""
    import aio_pika

    from common.messaging.topology import TopologySettings
    from common.settings import Env

    topology = TopologySettings.from_env(Env())
    url = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
    try:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(topology.fulfilment_queue, passive=True)
            await queue.purge()
    except Exception as exc:  # a benchmark result is still worth printing
        print(f"could not purge {topology.fulfilment_queue}: {exc!r}", file=sys.stderr)


async def run_bench(cfg: BenchConfig, console: Console) -> dict[str, Any]:
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "config": dataclasses.asdict(cfg),
        "started_at": time.time(),
    }
    if not cfg.skip_ceiling:
        console.print("[cyan]measuring the infrastructure ceiling ...[/]")
        result["ceiling"] = await measure_ceiling(
            CeilingConfig.from_env(cfg.concurrency, cfg.ceiling_duration)
        )
    group: ProcessGroup | None = None
    if not cfg.use_running:
        console.print("[cyan]starting the system ...[/]")
        group = ProcessGroup(
            {
                "LOG_LEVEL": "warning",
                "ORDER_FULFILMENT_ENABLED": "true" if cfg.fulfilment else "false",
            },
            log_dir=cfg.log_dir,
        )
        result["log_dir"] = str(group.log_dir)
        try:
            await group.start_all(within=cfg.startup_timeout)
        except Exception:
            await group.stop_all(within=10)
            raise
    analytics = CounterSampler(cfg.analytics_metrics_url, "analytics_service_events_consumed_total")
    notifications = CounterSampler(
        f"{cfg.notifications_url}/metrics", "notification_worker_events_consumed_total"
    )
    try:
        console.print("[cyan]warming up ...[/]")
        await run_load(
            LoadConfig(url=cfg.order_url, count=200, concurrency=cfg.concurrency),
            OrderGenerator(GeneratorConfig(), 1),
        )
        analytics.start()
        notifications.start()
        phases: list[dict[str, Any]] = []
        console.print(f"[cyan]saturation, closed loop c={cfg.concurrency} ...[/]")
        sat = await _phase(
            cfg,
            "saturation",
            rate_=None,
            duration=cfg.saturation_duration,
            count=cfg.saturation_count,
            seed=2,
        )
        phases.append(sat)
        half_rate = max(1.0, sat["load"]["accepted_per_s"] / 2)
        plan = [("half-saturation", half_rate)] + [(f"rate-{r:g}", r) for r in cfg.rates]
        for seed, (name, offered) in enumerate(plan, start=3):
            console.print(f"[cyan]{name}: offered {offered:.0f}/s ...[/]")
            phases.append(
                await _phase(
                    cfg,
                    name,
                    rate_=offered,
                    duration=cfg.rate_duration,
                    count=cfg.rate_count,
                    seed=seed,
                )
            )
        await analytics.stop()
        await notifications.stop()
        console.print("[cyan]cached GET /orders/{id} ...[/]")
        result["get"] = await _get_phase(cfg, sat["_ids"])
        for p in phases:
            p.pop("_ids", None)
        result["phases"] = phases
        result["consumers"] = {
            "analytics_peak_per_s": round(analytics.peak_rate(), 1),
            "analytics_active_mean_per_s": round(analytics.active_rate(), 1),
            "analytics_events": analytics.total(),
            "notifications_peak_per_s": round(notifications.peak_rate(), 1),
            "notifications_active_mean_per_s": round(notifications.active_rate(), 1),
            "notifications_events": notifications.total(),
        }
    finally:
        await analytics.stop()
        await notifications.stop()
        if group is not None:
            result["exit_codes"] = await group.stop_all(within=30)
            if not cfg.fulfilment:
                await _purge_fulfilment_queue()
    result["headline"] = headline(result)
    result["finished_at"] = time.time()
    return result


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"
    return str(value)


def render(result: dict[str, Any], console: Console) -> None:
    table = Table(title="Phases", title_justify="left")
    for col in (
        "phase",
        "offered/s",
        "accepted/s",
        "POST p50/p99 ms",
        "e2e p50/p99 ms",
        "e2e orders/s",
        "drain s",
        "lost",
        "doubled",
        "errors",
    ):
        table.add_column(col)
    for p in result.get("phases", []):
        load, audit = p["load"], p.get("audit", {})
        lat, e2e = load["latency_ms"], audit.get("e2e_latency_ms", {})
        table.add_row(
            p["name"],
            _fmt(load["offered_rate"]),
            _fmt(load["accepted_per_s"]),
            f"{lat['p50_ms']:.1f} / {lat['p99_ms']:.1f}",
            f"{e2e.get('p50_ms', 0):.1f} / {e2e.get('p99_ms', 0):.1f}",
            _fmt(audit.get("e2e_orders_per_s")),
            _fmt(p.get("drain_s")),
            _fmt(audit.get("lost")),
            _fmt(audit.get("doubled")),
            _fmt(load["error_count"]),
        )
    console.print(table)
    table = Table(
        title="Benchmark (ratio = system / ceiling measured in this run)", title_justify="left"
    )
    for col in ("figure", "system", "ceiling", "ratio", "ceiling basis", "target"):
        table.add_column(col)
    for name, row in result.get("headline", {}).items():
        table.add_row(
            name,
            _fmt(row["system"]),
            _fmt(row["ceiling"]),
            _fmt(row["ratio"]),
            row["ceiling_basis"],
            row.get("target", ""),
        )
    console.print(table)
    if result.get("exit_codes"):
        console.print(f"exit codes: {result['exit_codes']}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtool.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CI smoke: a few hundred orders")
    p.add_argument(
        "--use-running",
        action="store_true",
        help="benchmark the system already running instead of starting it",
    )
    p.add_argument("--skip-ceiling", action="store_true")
    p.add_argument(
        "--fulfilment",
        action="store_true",
        help="also run the fulfilment saga (payment, stock, confirm) in the order service",
    )
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--ceiling-duration", type=float, default=8.0)
    p.add_argument("--duration", type=float, default=20.0, help="saturation phase seconds")
    p.add_argument("--rates", default="500,1200", help="offered rates besides 50%% saturation")
    p.add_argument("--rate-duration", type=float, default=15.0)
    p.add_argument("--get-duration", type=float, default=8.0)
    p.add_argument("--audit-timeout", type=float, default=180.0)
    p.add_argument("--log-dir", default=None)
    p.add_argument("--json", dest="json_path", default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    install_uvloop()
    console = Console(width=None if sys.stdout.isatty() else 160)
    result = asyncio.run(run_bench(cfg, console))
    render(result, console)
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2, default=str)
            fh.write("\n")
    bad = [
        p["name"] for p in result.get("phases", []) if not (p.get("audit") or {}).get("ok", False)
    ]
    if bad:
        console.print(f"[bold red]audit failed in: {', '.join(bad)}[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
