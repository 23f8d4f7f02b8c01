"""Order service settings: read once from the environment at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from common.messaging.topology import TopologySettings
from common.settings import Env, SettingsError

__all__ = ["OrderSettings"]


@dataclass(frozen=True)
class OrderSettings:
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    database_url: str = "mysql+aiomysql://order_svc:order_svc_local@127.0.0.1:3306/order_db"
    db_pool_size: int = 20
    db_connect_timeout: int = 3
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout: float = 0.05
    cache_ttl_seconds: int = 300
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    topology: TopologySettings = field(default_factory=TopologySettings)
    relay_enabled: bool = True
    relay_batch_size: int = 500
    relay_poll_interval: float = 1.0
    relay_linger_seconds: float = 0.0
    outbox_retention_seconds: int = 86400
    # A row the broker refuses on its own (unroutable, nacked) is retried after 1, 2, 4 ... s
    # (capped at 300 s) and parked after this many attempts (about 8.5 minutes by default).
    outbox_max_attempts: int = 10
    outbox_retry_seconds: float = 1.0
    prune_interval_seconds: float = 10.0
    prune_batch_size: int = 5000
    idempotency_ttl_seconds: int = 86400
    write_batch_max: int = 64
    # Transactions in flight at once: each waits on a commit (fsync) round trip, and InnoDB's
    # own group commit merges concurrent fsyncs, so overlapping a few keeps MySQL busy.
    write_concurrency: int = 6
    # How long a create waits for its commit before answering "outcome unknown" (with the id
    # to look up); below the request timeout, so the answer is never a blind 503.
    write_timeout_seconds: float = 8.0
    # Lock waits (row and metadata) end the transaction well inside the write timeout.
    db_lock_wait_timeout: int = 5
    max_body_bytes: int = 16384
    # 0 turns each of these off; the rate limit and API keys are off by default (local use).
    request_timeout_seconds: float = 10.0
    rate_limit_per_second: float = 0.0
    rate_limit_burst: int = 0  # 0: one second's worth of requests
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    list_max_limit: int = 100
    log_level: str = "info"
    workers: int = 1
    # Order lifecycle (docs/lifecycle.md).
    fulfilment_enabled: bool = True
    fulfilment_prefetch: int = 400
    # Batches in flight at once: two, so one fills while the other commits; more only splits
    # the same events into smaller batches, each paying a transaction's fixed cost.
    fulfilment_concurrency: int = 2
    fulfilment_batch_size: int = 200
    fulfilment_batch_linger_seconds: float = 0.02
    fulfilment_max_attempts: int = 5
    schedule_horizon_seconds: int = 7 * 86400
    payment_decline_rate: float = 0.0
    payment_error_rate: float = 0.0
    payment_latency_seconds: float = 0.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OrderSettings:
        env = Env(environ)
        d = cls()
        return cls(
            http_host=env.text("ORDER_HTTP_HOST", d.http_host),
            http_port=env.integer("ORDER_HTTP_PORT", d.http_port, min_value=1),
            database_url=env.credential("ORDER_DATABASE_URL", d.database_url),
            db_pool_size=env.integer("ORDER_DB_POOL_SIZE", d.db_pool_size, min_value=1),
            db_connect_timeout=env.integer(
                "ORDER_DB_CONNECT_TIMEOUT", d.db_connect_timeout, min_value=1
            ),
            redis_url=env.credential("REDIS_URL", d.redis_url),
            redis_timeout=env.number("REDIS_TIMEOUT_SECONDS", d.redis_timeout, min_value=0.001),
            cache_ttl_seconds=env.integer(
                "ORDER_CACHE_TTL_SECONDS", d.cache_ttl_seconds, min_value=1
            ),
            rabbitmq_url=env.credential("RABBITMQ_URL", d.rabbitmq_url),
            topology=TopologySettings.from_env(env),
            relay_enabled=env.flag("ORDER_RELAY_ENABLED", d.relay_enabled),
            relay_batch_size=env.integer("ORDER_RELAY_BATCH_SIZE", d.relay_batch_size, min_value=1),
            relay_linger_seconds=env.number(
                "ORDER_RELAY_LINGER_SECONDS", d.relay_linger_seconds, min_value=0.0
            ),
            relay_poll_interval=env.number(
                "ORDER_RELAY_POLL_SECONDS", d.relay_poll_interval, min_value=0.01
            ),
            outbox_retention_seconds=env.integer(
                "ORDER_OUTBOX_RETENTION_SECONDS", d.outbox_retention_seconds, min_value=60
            ),
            outbox_max_attempts=env.integer(
                "ORDER_OUTBOX_MAX_ATTEMPTS", d.outbox_max_attempts, min_value=1
            ),
            outbox_retry_seconds=env.number(
                "ORDER_OUTBOX_RETRY_SECONDS", d.outbox_retry_seconds, min_value=0.01
            ),
            prune_interval_seconds=env.number(
                "ORDER_PRUNE_INTERVAL_SECONDS", d.prune_interval_seconds, min_value=0.1
            ),
            prune_batch_size=env.integer("ORDER_PRUNE_BATCH_SIZE", d.prune_batch_size, min_value=1),
            idempotency_ttl_seconds=env.integer(
                "ORDER_IDEMPOTENCY_TTL_SECONDS", d.idempotency_ttl_seconds, min_value=1
            ),
            write_batch_max=env.integer("ORDER_WRITE_BATCH_MAX", d.write_batch_max, min_value=1),
            write_timeout_seconds=env.number(
                "ORDER_WRITE_TIMEOUT_SECONDS", d.write_timeout_seconds, min_value=0.1
            ),
            db_lock_wait_timeout=env.integer(
                "ORDER_DB_LOCK_WAIT_TIMEOUT", d.db_lock_wait_timeout, min_value=1
            ),
            write_concurrency=env.integer(
                "ORDER_WRITE_CONCURRENCY", d.write_concurrency, min_value=1
            ),
            max_body_bytes=env.integer("ORDER_MAX_BODY_BYTES", d.max_body_bytes, min_value=256),
            request_timeout_seconds=env.number(
                "ORDER_REQUEST_TIMEOUT_SECONDS", d.request_timeout_seconds, min_value=0
            ),
            rate_limit_per_second=env.number(
                "ORDER_RATE_LIMIT_PER_SECOND", d.rate_limit_per_second, min_value=0
            ),
            rate_limit_burst=env.integer("ORDER_RATE_LIMIT_BURST", d.rate_limit_burst, min_value=0),
            api_keys=env.text_list("ORDER_API_KEYS", ""),
            list_max_limit=env.integer("ORDER_LIST_MAX_LIMIT", d.list_max_limit, min_value=1),
            log_level=env.choice("LOG_LEVEL", ("debug", "info", "warning", "error"), d.log_level),
            workers=env.integer("ORDER_WORKERS", d.workers, min_value=1),
            fulfilment_enabled=env.flag("ORDER_FULFILMENT_ENABLED", d.fulfilment_enabled),
            fulfilment_prefetch=env.integer(
                "ORDER_FULFILMENT_PREFETCH", d.fulfilment_prefetch, min_value=1
            ),
            fulfilment_concurrency=env.integer(
                "ORDER_FULFILMENT_CONCURRENCY", d.fulfilment_concurrency, min_value=1
            ),
            fulfilment_batch_linger_seconds=env.number(
                "ORDER_FULFILMENT_BATCH_LINGER_SECONDS",
                d.fulfilment_batch_linger_seconds,
                min_value=0.0,
            ),
            fulfilment_batch_size=env.integer(
                "ORDER_FULFILMENT_BATCH_SIZE", d.fulfilment_batch_size, min_value=1
            ),
            fulfilment_max_attempts=env.integer(
                "ORDER_FULFILMENT_MAX_ATTEMPTS", d.fulfilment_max_attempts, min_value=1
            ),
            schedule_horizon_seconds=env.integer(
                "ORDER_SCHEDULE_HORIZON_SECONDS", d.schedule_horizon_seconds, min_value=1
            ),
            payment_decline_rate=env.number(
                "ORDER_PAYMENT_DECLINE_RATE", d.payment_decline_rate, min_value=0
            ),
            payment_error_rate=env.number(
                "ORDER_PAYMENT_ERROR_RATE", d.payment_error_rate, min_value=0
            ),
            payment_latency_seconds=env.number(
                "ORDER_PAYMENT_LATENCY_SECONDS", d.payment_latency_seconds, min_value=0
            ),
        )._checked()

    def _checked(self) -> OrderSettings:
        if 0 < self.request_timeout_seconds <= self.write_timeout_seconds:
            raise SettingsError(
                f"ORDER_WRITE_TIMEOUT_SECONDS={self.write_timeout_seconds:g} must be below "
                f"ORDER_REQUEST_TIMEOUT_SECONDS={self.request_timeout_seconds:g}, so a create "
                "answers the truth before the request times out"
            )
        return self
