"""Logs never carry credentials: every process started with DSNs and URLs whose passwords are
wrong (so it logs its connection errors, at debug level) must not print those passwords, at
start-up or while failing to connect. Also the scrubber itself, on the text shapes that leak."""

from __future__ import annotations

import contextlib
import io
import logging
import sys

import httpx
import pytest
import structlog

from common.observability import configure_logging, get_logger, scrub_credentials
from common.testing import unique_name, wait_until
from loadtool.processes import SERVICES, ProcessGroup, free_port

pytestmark = pytest.mark.integration

SECRET = "Pw-" + unique_name("leak").replace("-", "")


def test_the_scrubber_hides_the_password_of_every_url_shape() -> None:
    texts = [
        f"mysql+aiomysql://order_svc:{SECRET}@127.0.0.1:3306/order_db",
        f"OperationalError('amqp://guest:{SECRET}@127.0.0.1:5672/orderflow')",
        f"redis://:{SECRET}@127.0.0.1:6379/0",
        f"https://user:{SECRET}@hooks.example.com/x",
    ]
    for text in texts:
        scrubbed = scrub_credentials(text)
        assert SECRET not in scrubbed and ":***@" in scrubbed, scrubbed
    assert scrub_credentials("no credentials: http://host/path a@b") == (
        "no credentials: http://host/path a@b"
    )


def test_structlog_events_and_exceptions_and_stdlib_records_are_scrubbed(monkeypatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    configure_logging("test-service", "debug")
    try:
        log = get_logger("t")
        log.info("connecting", database_url=f"mysql://u:{SECRET}@h/db")  # a secret key name
        log.info("connecting", target=f"amqp://u:{SECRET}@h/")  # any key
        try:
            raise ConnectionError(f"cannot reach redis://:{SECRET}@h:6379/0")
        except ConnectionError:
            log.exception("failed")
        logging.getLogger("aio_pika").error("lost amqp://u:%s@h/", SECRET)
    finally:
        structlog.reset_defaults()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[1]:
            root.addHandler(handler)
        root.setLevel(saved[0])
        for name in ("aio_pika", "aiormq", "uvicorn.access", "alembic"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    text = out.getvalue()
    assert "failed" in text and "lost" in text
    assert SECRET not in text, text


@pytest.mark.timeout(90)
async def test_no_process_logs_a_password_at_start_up_or_on_connection_errors() -> None:
    closed = free_port()
    env = {
        "LOG_LEVEL": "debug",
        "ORDER_DATABASE_URL": f"mysql+aiomysql://order_svc:{SECRET}@127.0.0.1:3306/order_db",
        "ANALYTICS_DATABASE_URL": (
            f"mysql+aiomysql://analytics_svc:{SECRET}@127.0.0.1:3306/analytics_db"
        ),
        "RABBITMQ_URL": f"amqp://guest:{SECRET}@127.0.0.1:5672/",
        "REDIS_URL": f"redis://:{SECRET}@127.0.0.1:{closed}/0",
        "ORDER_API_KEYS": f"key-{SECRET}",
        "NOTIFY_WEBHOOK_SECRET": SECRET,
        **{s.port_env: str(free_port()) for s in SERVICES},
    }
    group = ProcessGroup(env)
    names = [s.name for s in SERVICES]
    try:
        for name in names:
            group.start(name)

        async def every_process_logged_a_failure() -> bool:
            async with httpx.AsyncClient(timeout=5) as client:  # make the APIs hit their deps
                for name, path in (
                    ("order", "/orders/00000000-0000-0000-0000-000000000000"),
                    ("order", "/health/ready"),
                    ("analytics-api", "/analytics/summary"),
                    ("analytics-api", "/health/ready"),
                ):
                    with contextlib.suppress(httpx.HTTPError):
                        await client.get(group.url(name) + path)
            logs = [group.log_path(n).read_text(errors="replace") for n in names]
            return all(any(w in log.lower() for w in ("error", "fail", "warn")) for log in logs)

        await wait_until(
            every_process_logged_a_failure, timeout=30, interval=0.5, message="failure logs"
        )
    finally:
        await group.stop_all(within=15)
    for name in names:
        text = group.log_path(name).read_text(errors="replace")
        assert SECRET not in text, (
            f"{name} logged a credential:\n"
            + "\n".join(line for line in text.splitlines() if SECRET in line)[:3000]
        )
