"""``python -m loadtool``: load the order service, then audit the whole pipeline end to end."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from loadtool.audit import AuditConfig, Auditor, AuditReport
from loadtool.generator import GeneratorConfig, OrderGenerator
from loadtool.report import render, report_json
from loadtool.runner import LoadConfig, LoadResult, run_load

__all__ = [
    "EXIT_AUDIT_FAILED",
    "EXIT_OK",
    "EXIT_REQUEST_ERRORS",
    "EXIT_SUMMARY_MISMATCH",
    "EXIT_USAGE",
    "build_parser",
    "execute",
    "main",
    "run_and_audit",
]

EXIT_OK = 0
EXIT_AUDIT_FAILED = 1  # lost, doubled or unsent notifications, or a total the recount disputes
EXIT_USAGE = 2
EXIT_REQUEST_ERRORS = 3  # only with --fail-on-errors
EXIT_SUMMARY_MISMATCH = 4  # only with --strict-summary


DEFAULT_ANALYTICS_DATABASE_URL = (
    "mysql+aiomysql://analytics_svc:analytics_svc_local@127.0.0.1:3306/analytics_db"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtool",
        description="POST orders at a fixed concurrency (or offered rate), then audit that "
        "every accepted order reached analytics and notifications exactly once.",
    )
    p.add_argument(
        "--count",
        type=int,
        default=None,
        help="orders to send (default 1000 unless --duration is given)",
    )
    p.add_argument("--concurrency", type=int, default=16, help="connections / in-flight requests")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="offered orders/s (open loop); default: as fast as the concurrency allows",
    )
    p.add_argument("--duration", type=float, default=None, help="stop sending after S seconds")
    p.add_argument("--url", default=os.environ.get("ORDER_URL", "http://127.0.0.1:8080"))
    p.add_argument(
        "--analytics-url", default=os.environ.get("ANALYTICS_URL", "http://127.0.0.1:8081")
    )
    p.add_argument(
        "--notifications-url", default=os.environ.get("NOTIFICATIONS_URL", "http://127.0.0.1:8082")
    )
    p.add_argument(
        "--skip-notifications", action="store_true", help="do not audit the notification worker"
    )
    p.add_argument(
        "--analytics-database-url",
        default=os.environ.get("ANALYTICS_DATABASE_URL", DEFAULT_ANALYTICS_DATABASE_URL),
        help="the audit recounts the analytics totals from the facts in this database (read "
        f"only) and exits {EXIT_AUDIT_FAILED} when a stored total or an API answer differs",
    )
    p.add_argument("--no-recount", action="store_true", help="do not recount the analytics totals")
    p.add_argument(
        "--exclusive",
        action="store_true",
        help="the analytics database holds this run's orders only: every fact must be one of "
        "them, so the totals are exactly the accepted orders'",
    )
    d = GeneratorConfig()
    for name in ("customer", "product", "quantity"):
        p.add_argument(f"--min-{name}", type=int, default=getattr(d, f"min_{name}"))
        p.add_argument(f"--max-{name}", type=int, default=getattr(d, f"max_{name}"))
    p.add_argument(
        "--min-price-cents", type=int, default=d.min_unit_cents, help="lowest unit price in cents"
    )
    p.add_argument("--max-price-cents", type=int, default=d.max_unit_cents)
    p.add_argument("--currency", default=d.currency)
    p.add_argument(
        "--idempotency-keys",
        action="store_true",
        help="send a unique Idempotency-Key with every order",
    )
    p.add_argument("--seed", type=int, default=None, help="makes the order bodies reproducible")
    p.add_argument("--request-timeout", type=float, default=30.0)
    p.add_argument("--json", dest="json_path", default=None, help="also write the report here")
    p.add_argument("--verbose", action="store_true", help="print error samples")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-audit", action="store_true", help="skip the end-to-end audit")
    p.add_argument(
        "--audit-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for every accepted order to show up downstream",
    )
    p.add_argument(
        "--fail-on-errors",
        action="store_true",
        help=f"exit {EXIT_REQUEST_ERRORS} if any request failed",
    )
    p.add_argument(
        "--strict-summary",
        action="store_true",
        help=f"exit {EXIT_SUMMARY_MISMATCH} if the analytics summary delta differs "
        "from what was accepted (only valid when this tool is the only writer)",
    )
    return p


@dataclass(frozen=True)
class Options:
    load: LoadConfig
    generator: GeneratorConfig
    seed: int | None
    audit: AuditConfig | None
    json_path: str | None
    verbose: bool
    progress: bool
    fail_on_errors: bool
    strict_summary: bool


def options_from_args(args: argparse.Namespace) -> Options:
    count = args.count if args.count is not None else (None if args.duration else 1000)
    audit = None
    if not args.no_audit:
        audit = AuditConfig(
            analytics_url=args.analytics_url.rstrip("/"),
            notifications_url=None
            if args.skip_notifications
            else args.notifications_url.rstrip("/"),
            timeout=args.audit_timeout,
            analytics_database_url=None if args.no_recount else args.analytics_database_url,
            exclusive=args.exclusive,
        )
    options = Options(
        load=LoadConfig(
            url=args.url.rstrip("/"),
            count=count,
            concurrency=args.concurrency,
            rate=args.rate,
            duration=args.duration,
            request_timeout=args.request_timeout,
        ),
        generator=GeneratorConfig(
            min_customer=args.min_customer,
            max_customer=args.max_customer,
            min_product=args.min_product,
            max_product=args.max_product,
            min_quantity=args.min_quantity,
            max_quantity=args.max_quantity,
            min_unit_cents=args.min_price_cents,
            max_unit_cents=args.max_price_cents,
            currency=args.currency,
            idempotency_keys=args.idempotency_keys,
        ),
        seed=args.seed,
        audit=audit,
        json_path=args.json_path,
        verbose=args.verbose,
        progress=not args.no_progress,
        fail_on_errors=args.fail_on_errors,
        strict_summary=args.strict_summary,
    )
    options.load.validate()
    options.generator.validate()
    return options


async def run_and_audit(
    load: LoadConfig,
    generator: GeneratorConfig,
    audit: AuditConfig | None,
    *,
    seed: int | None = None,
    console: Console | None = None,
) -> tuple[LoadResult, AuditReport | None]:
    """The programmatic entry point (used by the benchmark and the e2e tests)."""
    auditor = Auditor(audit) if audit is not None else None
    try:
        before = await auditor.summary() if auditor is not None else None
        gen = OrderGenerator(generator, seed)
        if console is not None:
            result = await _with_progress(load, gen, console)
        else:
            result = await run_load(load, gen)
        report = None
        if auditor is not None:
            if console is not None:
                console.print(f"[cyan]auditing {len(result.accepted)} accepted orders ...[/]")
            report = await auditor.run(result.accepted, before)
        return result, report
    finally:
        if auditor is not None:
            await auditor.aclose()


async def _with_progress(load: LoadConfig, gen: OrderGenerator, console: Console) -> LoadResult:
    total = float(load.count) if load.count is not None else None
    by_time = load.count is None
    if by_time:
        total = load.duration
    with Progress(
        TextColumn("[cyan]POST /orders"),
        BarColumn(),
        MofNCompleteColumn() if not by_time else TextColumn("{task.completed:.0f}s"),
        TextColumn(
            "accepted {task.fields[accepted]}  errors {task.fields[errors]}  "
            "{task.fields[rps]:.0f}/s"
        ),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("load", total=total, accepted=0, errors=0, rps=0.0)

        def update(r: LoadResult) -> None:
            done = r.elapsed if by_time else len(r.accepted) + r.error_count
            progress.update(
                task,
                completed=done,
                accepted=len(r.accepted),
                errors=r.error_count,
                rps=len(r.accepted) / r.elapsed if r.elapsed > 0 else 0.0,
            )

        return await run_load(load, gen, on_progress=update)


def exit_code(options: Options, result: LoadResult, report: AuditReport | None) -> int:
    if report is not None and not report.ok:
        return EXIT_AUDIT_FAILED
    if options.fail_on_errors and result.error_count:
        return EXIT_REQUEST_ERRORS
    if options.strict_summary and report is not None and not report.summary_matches:
        return EXIT_SUMMARY_MISMATCH
    return EXIT_OK


async def execute(options: Options, console: Console) -> tuple[dict[str, Any], int]:
    result, report = await run_and_audit(
        options.load,
        options.generator,
        options.audit,
        seed=options.seed,
        console=console if options.progress else None,
    )
    data = report_json(result, report)
    render(data, console)
    if options.verbose and result.error_samples:
        console.print("[yellow]error samples:[/]")
        for sample in result.error_samples:
            console.print(f"  {sample}", markup=False)
    code = exit_code(options, result, report)
    data["exit_code"] = code
    return data, code


def install_uvloop() -> None:
    """uvloop roughly halves the client's CPU per request; optional."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from_args(args)
    except ValueError as exc:
        parser.print_usage(sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    install_uvloop()
    console = Console(width=None if sys.stdout.isatty() else 120)
    try:
        data, code = asyncio.run(execute(options, console))
    except KeyboardInterrupt:
        return 130
    if options.json_path:
        with open(options.json_path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
    return code
