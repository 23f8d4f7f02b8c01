"""Order service settings: read once from the environment at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from common.messaging.topology import TopologySettings
from common.settings import Env

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
    outbox_retention_seconds: int = 86400
    idempotency_ttl_seconds: int = 86400
    write_batch_max: int = 64
    max_body_bytes: int = 16384
    list_max_limit: int = 100
    log_level: str = "info"
    workers: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OrderSettings:
        env = Env(environ)
        d = cls()
        return cls(
            http_host=env.text("ORDER_HTTP_HOST", d.http_host),
            http_port=env.integer("ORDER_HTTP_PORT", d.http_port, min_value=1),
            database_url=env.text("ORDER_DATABASE_URL", d.database_url),
            db_pool_size=env.integer("ORDER_DB_POOL_SIZE", d.db_pool_size, min_value=1),
            db_connect_timeout=env.integer(
                "ORDER_DB_CONNECT_TIMEOUT", d.db_connect_timeout, min_value=1
            ),
            redis_url=env.text("REDIS_URL", d.redis_url),
            redis_timeout=env.number("REDIS_TIMEOUT_SECONDS", d.redis_timeout, min_value=0.001),
            cache_ttl_seconds=env.integer(
                "ORDER_CACHE_TTL_SECONDS", d.cache_ttl_seconds, min_value=1
            ),
            rabbitmq_url=env.text("RABBITMQ_URL", d.rabbitmq_url),
            topology=TopologySettings.from_env(env),
            relay_enabled=env.flag("ORDER_RELAY_ENABLED", d.relay_enabled),
            relay_batch_size=env.integer("ORDER_RELAY_BATCH_SIZE", d.relay_batch_size, min_value=1),
            relay_poll_interval=env.number(
                "ORDER_RELAY_POLL_SECONDS", d.relay_poll_interval, min_value=0.01
            ),
            outbox_retention_seconds=env.integer(
                "ORDER_OUTBOX_RETENTION_SECONDS", d.outbox_retention_seconds, min_value=60
            ),
            idempotency_ttl_seconds=env.integer(
                "ORDER_IDEMPOTENCY_TTL_SECONDS", d.idempotency_ttl_seconds, min_value=1
            ),
            write_batch_max=env.integer("ORDER_WRITE_BATCH_MAX", d.write_batch_max, min_value=1),
            max_body_bytes=env.integer("ORDER_MAX_BODY_BYTES", d.max_body_bytes, min_value=256),
            list_max_limit=env.integer("ORDER_LIST_MAX_LIMIT", d.list_max_limit, min_value=1),
            log_level=env.choice("LOG_LEVEL", ("debug", "info", "warning", "error"), d.log_level),
            workers=env.integer("ORDER_WORKERS", d.workers, min_value=1),
        )
