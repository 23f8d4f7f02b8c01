"""Analytics service settings: read once from the environment at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from common.declared_settings import read_settings, setting
from common.messaging.topology import TopologySettings
from common.settings import LOCAL_RABBITMQ_URL, LOCAL_REDIS_URL, LOG_LEVELS, Env, SettingsError

__all__ = ["AnalyticsSettings"]


@dataclass(frozen=True)
class AnalyticsSettings:
    http_host: str = setting(
        "ANALYTICS_HTTP_HOST", "127.0.0.1", "API listen host", read_by="analytics api"
    )
    http_port: int = setting(
        "ANALYTICS_HTTP_PORT", 8081, "API listen port", min_value=1, read_by="analytics api"
    )
    consumer_http_host: str = setting(
        "ANALYTICS_CONSUMER_HTTP_HOST",
        "127.0.0.1",
        "metrics/health listen host",
        read_by="analytics consumer",
    )
    consumer_http_port: int = setting(
        "ANALYTICS_CONSUMER_HTTP_PORT",
        8083,
        "metrics/health listen port",
        min_value=1,
        read_by="analytics consumer",
    )
    database_url: str = setting(
        "ANALYTICS_DATABASE_URL",
        "mysql+aiomysql://analytics_svc:analytics_svc_local@127.0.0.1:3306/analytics_db",
        "analytics database",
        credential=True,
    )
    db_pool_size: int = setting("ANALYTICS_DB_POOL_SIZE", 10, "connection pool size", min_value=1)
    db_connect_timeout: int = setting(
        "ANALYTICS_DB_CONNECT_TIMEOUT", 3, "database connect timeout, seconds", min_value=1
    )
    redis_url: str = setting("REDIS_URL", LOCAL_REDIS_URL, "cache", credential=True, shared=True)
    redis_timeout: float = setting(
        "REDIS_TIMEOUT_SECONDS",
        0.05,
        "Redis timeout before falling back to the database",
        min_value=0.001,
        shared=True,
    )
    summary_ttl_seconds: float = setting(
        "ANALYTICS_SUMMARY_TTL_SECONDS",
        2.0,
        "summary staleness bound, even when the consumer could not reach Redis to invalidate it",
        min_value=0.01,
    )
    summary_fallback_ttl_seconds: int = setting(
        "ANALYTICS_SUMMARY_FALLBACK_TTL_SECONDS",
        3600,
        "last summary kept to answer while the database is down",
        min_value=1,
    )
    rabbitmq_url: str = setting(
        "RABBITMQ_URL", LOCAL_RABBITMQ_URL, "broker", broker=True, shared=True
    )
    topology: TopologySettings = field(default_factory=TopologySettings)
    consumer_name: str = setting(
        "ANALYTICS_CONSUMER_NAME", "analytics", "inbox consumer name", read_by="analytics consumer"
    )
    prefetch: int = setting(
        "ANALYTICS_PREFETCH", 400, "unacked messages", min_value=1, read_by="analytics consumer"
    )
    batch_size: int = setting(
        "ANALYTICS_BATCH_SIZE", 200, "events per batch", min_value=1, read_by="analytics consumer"
    )
    # Each batch costs its round trips (broker, database, Redis) whatever its size, and the
    # three events of an order arrive apart: waiting 30 ms for company and collecting with one
    # worker (two split a trickle into batches of one) halved the CPU per order at 30 orders/s.
    # Under a backlog batches are full at once and neither applies.
    batch_linger_seconds: float = setting(
        "ANALYTICS_BATCH_LINGER_SECONDS",
        0.03,
        "wait this long for more events before applying a small batch (one transaction, two"
        " database round trips per batch): adds at most this to the end-to-end latency when"
        " events trickle",
        min_value=0.0,
        read_by="analytics consumer",
    )
    workers: int = setting(
        "ANALYTICS_CONSUMER_WORKERS",
        1,
        "batches collected and applied at once; a second overlaps a batch's database wait with"
        " the next collection but splits a trickle into more, smaller batches (more CPU per"
        " event): scale out with more consumer processes instead",
        min_value=1,
        read_by="analytics consumer",
    )
    max_attempts: int = setting(
        "ANALYTICS_MAX_ATTEMPTS",
        5,
        "attempts before parking",
        min_value=1,
        read_by="analytics consumer",
    )
    deadlock_retries: int = setting(
        "ANALYTICS_DEADLOCK_RETRIES",
        3,
        "in-transaction retries of a deadlock",
        min_value=0,
        read_by="analytics consumer",
    )
    # Past every retry tier and the time a parked event is expected to wait for a replay.
    # Older redeliveries are still absorbed by the facts' order_version, so pruning never
    # doubles an effect.
    inbox_retention_seconds: float = setting(
        "ANALYTICS_INBOX_RETENTION_SECONDS",
        7 * 24 * 3600.0,
        "inbox rows older than this are pruned; must exceed the sum of `ANALYTICS_RETRY_DELAYS`"
        " (checked at start). Keep it longer than a parked event waits for its replay; an older"
        " redelivery is still absorbed by the fact's `order_version`",
        min_value=1.0,
        read_by="analytics consumer",
    )
    inbox_prune_interval_seconds: float = setting(
        "ANALYTICS_INBOX_PRUNE_INTERVAL_SECONDS",
        10.0,
        "pause between pruning runs",
        min_value=0.1,
        read_by="analytics consumer",
    )
    inbox_prune_batch: int = setting(
        "ANALYTICS_INBOX_PRUNE_BATCH",
        5000,
        "rows per `DELETE ... LIMIT`",
        min_value=1,
        read_by="analytics consumer",
    )
    # At most batch * max_batches rows per run: 10,000 rows/s with the defaults, several times
    # the write rate of the targets (3 events per order).
    inbox_prune_max_batches: int = setting(
        "ANALYTICS_INBOX_PRUNE_MAX_BATCHES",
        20,
        "most `DELETE`s per run (they go on while they come back full)",
        min_value=1,
        read_by="analytics consumer",
    )
    max_buckets: int = setting(
        "ANALYTICS_MAX_BUCKETS",
        1000,
        "most buckets of a revenue query",
        min_value=1,
        read_by="analytics api",
    )
    top_max_limit: int = setting(
        "ANALYTICS_TOP_MAX_LIMIT",
        100,
        "largest top-list page",
        min_value=1,
        read_by="analytics api",
    )
    audit_max_ids: int = setting(
        "ANALYTICS_AUDIT_MAX_IDS",
        10000,
        "most order ids of one audit request",
        min_value=1,
        read_by="analytics api",
    )
    api_keys: tuple[str, ...] = setting(
        "ANALYTICS_API_KEYS",
        (),
        "comma-separated keys; set, every request but health and metrics needs one (realm"
        " `analytics`); empty: open (local use)",
        secret=True,
        read_by="analytics api",
    )
    log_level: str = setting("LOG_LEVEL", "info", "log level", choices=LOG_LEVELS, shared=True)

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
        return read_settings(cls, env)
