"""Order service settings: read once from the environment at start-up, loud when wrong."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from common.declared_settings import read_settings, setting
from common.messaging.topology import TopologySettings
from common.settings import LOCAL_RABBITMQ_URL, LOCAL_REDIS_URL, LOG_LEVELS, Env, SettingsError

__all__ = ["OrderSettings"]


@dataclass(frozen=True)
class OrderSettings:
    http_host: str = setting("ORDER_HTTP_HOST", "127.0.0.1", "listen host")
    http_port: int = setting("ORDER_HTTP_PORT", 8080, "listen port", min_value=1)
    database_url: str = setting(
        "ORDER_DATABASE_URL",
        "mysql+aiomysql://order_svc:order_svc_local@127.0.0.1:3306/order_db",
        "order database",
        credential=True,
    )
    db_pool_size: int = setting("ORDER_DB_POOL_SIZE", 20, "connection pool size", min_value=1)
    db_connect_timeout: int = setting(
        "ORDER_DB_CONNECT_TIMEOUT", 3, "database connect timeout, seconds", min_value=1
    )
    redis_url: str = setting("REDIS_URL", LOCAL_REDIS_URL, "cache", credential=True, shared=True)
    redis_timeout: float = setting(
        "REDIS_TIMEOUT_SECONDS",
        0.05,
        "Redis timeout before falling back to the database",
        min_value=0.001,
        shared=True,
    )
    cache_ttl_seconds: int = setting(
        "ORDER_CACHE_TTL_SECONDS", 300, "order cache entry lifetime", min_value=1
    )
    rabbitmq_url: str = setting(
        "RABBITMQ_URL", LOCAL_RABBITMQ_URL, "broker", broker=True, shared=True
    )
    topology: TopologySettings = field(default_factory=TopologySettings)
    relay_enabled: bool = setting(
        "ORDER_RELAY_ENABLED", True, "run the outbox relay in this process"
    )
    relay_batch_size: int = setting(
        "ORDER_RELAY_BATCH_SIZE", 500, "rows per relay batch", min_value=1
    )
    # A batch's confirms wait on the broker's disk writes: with one batch at a time the relay
    # managed one batch per confirm cycle, and every commit queued behind it.
    relay_batches_in_flight: int = setting(
        "ORDER_RELAY_BATCHES_IN_FLIGHT",
        4,
        "handed-over outbox batches published and awaiting confirms at once",
        min_value=1,
    )
    relay_poll_interval: float = setting(
        "ORDER_RELAY_POLL_SECONDS", 1.0, "relay polling fallback", min_value=0.01
    )
    relay_linger_seconds: float = setting(
        "ORDER_RELAY_LINGER_SECONDS",
        0.0,
        "after a commit wakes the relay, wait this long so nearby commits share one publish"
        " batch (off: it did not help in the benchmark)",
        min_value=0.0,
    )
    # On a host shared with the saga, the consumers, MariaDB and RabbitMQ, publishing during a
    # burst takes the CPU the next POSTs wait for; the events are safe in the outbox meanwhile
    # (order_service/burst_hold.py, docs/benchmark.md). Below the bound of OutboxBacklogTooOld.
    relay_hold_max_seconds: float = setting(
        "ORDER_RELAY_HOLD_MAX_SECONDS",
        20.0,
        "while the API is saturated the relay holds committed events back for at most this"
        " long, then publishes them (0: never hold)",
        min_value=0.0,
    )
    relay_hold_concurrency: float = setting(
        "ORDER_RELAY_HOLD_CONCURRENCY",
        10.0,
        "POST /orders in flight in this process, averaged over each half second of the last two,"
        " at or above which the relay may hold events back (it stops below half of it)",
        min_value=1.0,
    )
    # Loads the host sustains keep their events flowing: the e2e target is at 300 orders/s, and
    # two seconds of it count 300 +- 4 %. Higher, and a slow host's closed loop of 16
    # connections (350-420/s before a hold) started its hold late or not at all.
    relay_hold_min_rate: float = setting(
        "ORDER_RELAY_HOLD_MIN_RATE",
        320.0,
        "POST /orders answered per second in this process, over the last two seconds, below"
        " which the relay never holds events back",
        min_value=0.0,
    )
    outbox_retention_seconds: int = setting(
        "ORDER_OUTBOX_RETENTION_SECONDS", 86400, "how long sent outbox rows are kept", min_value=60
    )
    # A row the broker refuses on its own (unroutable, nacked) is retried after 1, 2, 4 ... s
    # (capped at 300 s) and parked after this many attempts (about 8.5 minutes by default).
    outbox_max_attempts: int = setting(
        "ORDER_OUTBOX_MAX_ATTEMPTS",
        10,
        "attempts of an outbox row the broker refuses on its own (unroutable, nacked) before it"
        " is parked (see *Outbox parking lot*); a broker outage spends none",
        min_value=1,
    )
    outbox_retry_seconds: float = setting(
        "ORDER_OUTBOX_RETRY_SECONDS",
        1.0,
        "first retry delay of such a row; doubles per attempt, capped at 300 s (10 attempts:"
        " about 8.5 min)",
        min_value=0.01,
    )
    prune_interval_seconds: float = setting(
        "ORDER_PRUNE_INTERVAL_SECONDS",
        10.0,
        "pause between pruning runs (published outbox rows past retention, expired"
        " Idempotency-Keys); each run deletes until nothing due is left",
        min_value=0.1,
    )
    prune_batch_size: int = setting(
        "ORDER_PRUNE_BATCH_SIZE",
        5000,
        "rows per pruning `DELETE ... LIMIT`, one short transaction each",
        min_value=1,
    )
    idempotency_ttl_seconds: int = setting(
        "ORDER_IDEMPOTENCY_TTL_SECONDS", 86400, "Idempotency-Key lifetime", min_value=1
    )
    write_batch_max: int = setting(
        "ORDER_WRITE_BATCH_MAX", 64, "most new orders per group-commit transaction", min_value=1
    )
    # Transactions in flight at once: each waits on a commit (fsync) round trip, and InnoDB's
    # own group commit merges concurrent fsyncs, so overlapping a few keeps MySQL busy.
    write_concurrency: int = setting(
        "ORDER_WRITE_CONCURRENCY", 6, "group-commit transactions in flight at once", min_value=1
    )
    # Below the request timeout, so the answer is never a blind 503 (checked at start).
    write_timeout_seconds: float = setting(
        "ORDER_WRITE_TIMEOUT_SECONDS",
        8.0,
        'how long a create waits for its commit before answering 503 "outcome unknown" with'
        " the order's `Location` (must be below `ORDER_REQUEST_TIMEOUT_SECONDS`)",
        min_value=0.1,
    )
    # Lock waits (row and metadata) end the transaction well inside the write timeout.
    db_lock_wait_timeout: int = setting(
        "ORDER_DB_LOCK_WAIT_TIMEOUT",
        5,
        "row and metadata lock waits (s) before a transaction gives up (rolled back, answered 503)",
        min_value=1,
    )
    max_body_bytes: int = setting(
        "ORDER_MAX_BODY_BYTES", 16384, "request body limit (413 above)", min_value=256
    )
    # 0 turns each of these off; the rate limit and API keys are off by default (local use).
    request_timeout_seconds: float = setting(
        "ORDER_REQUEST_TIMEOUT_SECONDS",
        10.0,
        "a request still running after this gets a 503 problem (0: off)",
        min_value=0,
    )
    rate_limit_per_second: float = setting(
        "ORDER_RATE_LIMIT_PER_SECOND",
        0.0,
        "per-client token bucket (0: off) → 429 with `Retry-After`",
        min_value=0,
    )
    rate_limit_burst: int = setting(
        "ORDER_RATE_LIMIT_BURST", 0, "token bucket size (0: one second's worth)", min_value=0
    )
    api_keys: tuple[str, ...] = setting(
        "ORDER_API_KEYS",
        (),
        "comma-separated keys; when set, every request but health and metrics (reads too) needs"
        " `Authorization: Bearer <key>` or `X-API-Key`, and an Idempotency-Key is scoped to the"
        " API key that sent it (see docs/security.md)",
        secret=True,
    )
    list_max_limit: int = setting("ORDER_LIST_MAX_LIMIT", 100, "page size cap", min_value=1)
    log_level: str = setting("LOG_LEVEL", "info", "log level", choices=LOG_LEVELS, shared=True)
    workers: int = setting(
        "ORDER_WORKERS",
        1,
        "uvicorn worker processes (each runs its own relay; SKIP LOCKED keeps them apart). Each"
        " worker answers `/metrics` for itself only, so above 1 a scrape sees one worker",
        min_value=1,
    )
    # Order lifecycle (docs/lifecycle.md).
    fulfilment_enabled: bool = setting(
        "ORDER_FULFILMENT_ENABLED", True, "run the fulfilment and scheduler consumers here"
    )
    # On by default: on two shared cores a process of its own for the saga gave no steady gain
    # and a worse e2e tail at 300 orders/s (docs/benchmark.md); with cores of its own it takes
    # the saga's batches off the request path's event loop.
    fulfilment_in_api: bool = setting(
        "ORDER_FULFILMENT_IN_API",
        True,
        "the API process runs the fulfilment and scheduler consumers; false: only"
        " `python -m order_service fulfilment` does",
    )
    fulfilment_http_port: int = setting(
        "ORDER_FULFILMENT_HTTP_PORT",
        8084,
        "health and metrics port of `python -m order_service fulfilment`",
        min_value=1,
        read_by="order fulfilment",
    )
    fulfilment_prefetch: int = setting(
        "ORDER_FULFILMENT_PREFETCH", 400, "fulfilment: unacked messages", min_value=1
    )
    # Batches in flight at once: two, so one fills while the other commits; more only splits
    # the same events into smaller batches, each paying a transaction's fixed cost.
    fulfilment_concurrency: int = setting(
        "ORDER_FULFILMENT_CONCURRENCY", 2, "fulfilment batches in flight at once", min_value=1
    )
    fulfilment_batch_size: int = setting(
        "ORDER_FULFILMENT_BATCH_SIZE",
        200,
        "OrderCreated events the saga charges and commits together (one transaction)",
        min_value=1,
    )
    # Nothing waits on the saga but the order's later status (the POST answered already, and
    # analytics counts OrderCreated without it): at 60 orders/s, 0.1 s instead of 0.02 made
    # the pipeline's CPU per order 7 % smaller (docs/benchmark.md).
    fulfilment_batch_linger_seconds: float = setting(
        "ORDER_FULFILMENT_BATCH_LINGER_SECONDS",
        0.1,
        "how long a fulfilment batch waits for more before it starts (each batch costs the same"
        " round trips whatever its size; adds at most this before payment at a trickle)",
        min_value=0.0,
    )
    fulfilment_max_attempts: int = setting(
        "ORDER_FULFILMENT_MAX_ATTEMPTS", 5, "fulfilment attempts before parking", min_value=1
    )
    schedule_horizon_seconds: int = setting(
        "ORDER_SCHEDULE_HORIZON_SECONDS",
        7 * 86400,
        "how far ahead `scheduled_time` may be",
        min_value=1,
    )
    payment_decline_rate: float = setting(
        "ORDER_PAYMENT_DECLINE_RATE",
        0.0,
        "payment simulator: extra random declines (amounts ending in .13 always decline)",
        min_value=0,
    )
    payment_error_rate: float = setting(
        "ORDER_PAYMENT_ERROR_RATE", 0.0, "payment simulator: transient errors", min_value=0
    )
    payment_latency_seconds: float = setting(
        "ORDER_PAYMENT_LATENCY_SECONDS", 0.0, "payment simulator: latency", min_value=0
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OrderSettings:
        env = Env(environ)
        return read_settings(cls, env)._checked()

    def _checked(self) -> OrderSettings:
        if 0 < self.request_timeout_seconds <= self.write_timeout_seconds:
            raise SettingsError(
                f"ORDER_WRITE_TIMEOUT_SECONDS={self.write_timeout_seconds:g} must be below "
                f"ORDER_REQUEST_TIMEOUT_SECONDS={self.request_timeout_seconds:g}, so a create "
                "answers the truth before the request times out"
            )
        return self
