"""Analytics service settings: read once from the environment at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from common.messaging.topology import TopologySettings
from common.settings import Env, SettingsError

__all__ = ["AnalyticsSettings"]


@dataclass(frozen=True)
class AnalyticsSettings:
    http_host: str = "127.0.0.1"
    http_port: int = 8081
    consumer_http_host: str = "127.0.0.1"
    consumer_http_port: int = 8083
    database_url: str = (
        "mysql+aiomysql://analytics_svc:analytics_svc_local@127.0.0.1:3306/analytics_db"
    )
    db_pool_size: int = 10
    db_connect_timeout: int = 3
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout: float = 0.05
    # The summary is never staler than this after an event is applied, even when the
    # consumer could not reach Redis to invalidate it.
    summary_ttl_seconds: float = 2.0
    # How long the last summary is kept to answer while the database is down.
    summary_fallback_ttl_seconds: int = 3600
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    topology: TopologySettings = field(default_factory=TopologySettings)
    consumer_name: str = "analytics"
    prefetch: int = 400
    batch_size: int = 200
    # Each batch costs its round trips (broker, database, Redis) whatever its size, and the
    # three events of an order arrive apart: waiting 30 ms for company and collecting with one
    # worker (two split a trickle into batches of one) halved the CPU per order at 30 orders/s.
    # Under a backlog batches are full at once and neither applies.
    batch_linger_seconds: float = 0.03
    workers: int = 1
    max_attempts: int = 5
    deadlock_retries: int = 3
    # The inbox keeps an event id this long: past every retry tier and the time a parked event
    # is expected to wait for a replay. Older redeliveries are still absorbed by the facts'
    # order_version, so pruning never doubles an effect.
    inbox_retention_seconds: float = 7 * 24 * 3600.0
    inbox_prune_interval_seconds: float = 10.0
    inbox_prune_batch: int = 5000
    # At most batch * max_batches rows per run: 10,000 rows/s with the defaults, several times
    # the write rate of the targets (3 events per order).
    inbox_prune_max_batches: int = 20
    max_buckets: int = 1000
    top_max_limit: int = 100
    audit_max_ids: int = 10000
    # Empty: the API is open (local use); set, every request but health and metrics needs one.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    log_level: str = "info"

    def __post_init__(self) -> None:
        horizon = sum(self.topology.analytics_delays)
        if self.inbox_retention_seconds <= horizon:
            raise SettingsError(
                f"ANALYTICS_INBOX_RETENTION_SECONDS={self.inbox_retention_seconds:g} must exceed "
                f"the retry tiers' total delay ({horizon:g} s, ANALYTICS_RETRY_DELAYS)"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AnalyticsSettings:
        env = Env(environ)
        d = cls()
        return cls(
            http_host=env.text("ANALYTICS_HTTP_HOST", d.http_host),
            http_port=env.integer("ANALYTICS_HTTP_PORT", d.http_port, min_value=1),
            consumer_http_host=env.text("ANALYTICS_CONSUMER_HTTP_HOST", d.consumer_http_host),
            consumer_http_port=env.integer(
                "ANALYTICS_CONSUMER_HTTP_PORT", d.consumer_http_port, min_value=1
            ),
            database_url=env.credential("ANALYTICS_DATABASE_URL", d.database_url),
            db_pool_size=env.integer("ANALYTICS_DB_POOL_SIZE", d.db_pool_size, min_value=1),
            db_connect_timeout=env.integer(
                "ANALYTICS_DB_CONNECT_TIMEOUT", d.db_connect_timeout, min_value=1
            ),
            redis_url=env.credential("REDIS_URL", d.redis_url),
            redis_timeout=env.number("REDIS_TIMEOUT_SECONDS", d.redis_timeout, min_value=0.001),
            summary_ttl_seconds=env.number(
                "ANALYTICS_SUMMARY_TTL_SECONDS", d.summary_ttl_seconds, min_value=0.01
            ),
            summary_fallback_ttl_seconds=env.integer(
                "ANALYTICS_SUMMARY_FALLBACK_TTL_SECONDS",
                d.summary_fallback_ttl_seconds,
                min_value=1,
            ),
            rabbitmq_url=env.credential("RABBITMQ_URL", d.rabbitmq_url),
            topology=TopologySettings.from_env(env),
            consumer_name=env.text("ANALYTICS_CONSUMER_NAME", d.consumer_name),
            prefetch=env.integer("ANALYTICS_PREFETCH", d.prefetch, min_value=1),
            batch_size=env.integer("ANALYTICS_BATCH_SIZE", d.batch_size, min_value=1),
            batch_linger_seconds=env.number(
                "ANALYTICS_BATCH_LINGER_SECONDS", d.batch_linger_seconds, min_value=0.0
            ),
            workers=env.integer("ANALYTICS_CONSUMER_WORKERS", d.workers, min_value=1),
            max_attempts=env.integer("ANALYTICS_MAX_ATTEMPTS", d.max_attempts, min_value=1),
            deadlock_retries=env.integer(
                "ANALYTICS_DEADLOCK_RETRIES", d.deadlock_retries, min_value=0
            ),
            inbox_retention_seconds=env.number(
                "ANALYTICS_INBOX_RETENTION_SECONDS", d.inbox_retention_seconds, min_value=1.0
            ),
            inbox_prune_interval_seconds=env.number(
                "ANALYTICS_INBOX_PRUNE_INTERVAL_SECONDS",
                d.inbox_prune_interval_seconds,
                min_value=0.1,
            ),
            inbox_prune_batch=env.integer(
                "ANALYTICS_INBOX_PRUNE_BATCH", d.inbox_prune_batch, min_value=1
            ),
            inbox_prune_max_batches=env.integer(
                "ANALYTICS_INBOX_PRUNE_MAX_BATCHES", d.inbox_prune_max_batches, min_value=1
            ),
            max_buckets=env.integer("ANALYTICS_MAX_BUCKETS", d.max_buckets, min_value=1),
            top_max_limit=env.integer("ANALYTICS_TOP_MAX_LIMIT", d.top_max_limit, min_value=1),
            audit_max_ids=env.integer("ANALYTICS_AUDIT_MAX_IDS", d.audit_max_ids, min_value=1),
            api_keys=env.text_list("ANALYTICS_API_KEYS", ""),
            log_level=env.choice("LOG_LEVEL", ("debug", "info", "warning", "error"), d.log_level),
        )
