"""Notification worker settings: read once from the environment at start-up, loud when wrong."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from common.messaging.topology import ConsumerQueue, TopologySettings
from common.settings import Env, SettingsError

__all__ = [
    "CHANNEL_NAMES",
    "NotificationSettings",
    "SmtpSettings",
    "WebhookSettings",
]

CHANNEL_NAMES = ("log", "smtp", "webhook")
# A claim must outlive the slowest send it guards, or a second delivery could start the same send.
CLAIM_MARGIN_SECONDS = 5.0


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 25
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    use_tls: bool = False
    sender: str = "orders@example.com"
    recipient: str = "ops@example.com"
    timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Env) -> SmtpSettings:
        d = cls()
        return cls(
            host=env.text("NOTIFY_SMTP_HOST", d.host),
            port=env.integer("NOTIFY_SMTP_PORT", d.port, min_value=1),
            username=env.optional_text("NOTIFY_SMTP_USERNAME"),
            password=env.optional_text("NOTIFY_SMTP_PASSWORD"),
            starttls=env.flag("NOTIFY_SMTP_STARTTLS", d.starttls),
            use_tls=env.flag("NOTIFY_SMTP_TLS", d.use_tls),
            sender=env.text("NOTIFY_SMTP_FROM", d.sender),
            recipient=env.text("NOTIFY_SMTP_TO", d.recipient),
            timeout=env.number("NOTIFY_SMTP_TIMEOUT_SECONDS", d.timeout, min_value=0.1),
        )


@dataclass(frozen=True)
class WebhookSettings:
    url: str = ""
    secret: str = ""
    timeout: float = 5.0
    signature_header: str = "X-Signature-SHA256"

    @classmethod
    def from_env(cls, env: Env, *, required: bool) -> WebhookSettings:
        d = cls()
        return cls(
            # Only demanded when the channel is on, so a log-only worker needs no webhook config.
            url=env.text("NOTIFY_WEBHOOK_URL", None if required else ""),
            secret=env.text("NOTIFY_WEBHOOK_SECRET", None if required else ""),
            timeout=env.number("NOTIFY_WEBHOOK_TIMEOUT_SECONDS", d.timeout, min_value=0.05),
            signature_header=env.text("NOTIFY_WEBHOOK_SIGNATURE_HEADER", d.signature_header),
        )


@dataclass(frozen=True)
class NotificationSettings:
    http_host: str = "127.0.0.1"
    http_port: int = 8082
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "notif"
    topology: TopologySettings = field(default_factory=TopologySettings)
    channels: tuple[str, ...] = ("log",)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    prefetch: int = 64
    # Batches handled at once, each of up to batch_size messages sharing one claim round trip
    # and one record round trip to Redis.
    concurrency: int = 4
    batch_size: int = 32
    channel_concurrency: int = 16
    max_attempts: int = 5
    reminder_minutes: float = 0.0
    max_schedule_ahead_seconds: float = 86_400.0
    sent_ttl_seconds: int = 3 * 86_400
    audit_ttl_seconds: int = 7 * 86_400
    shutdown_timeout: float = 30.0
    scheduled_gauge_interval: float = 5.0
    # Empty: the audit endpoint is open (local use); set, it needs one of these keys.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    log_level: str = "info"

    def __post_init__(self) -> None:
        unknown = [c for c in self.channels if c not in CHANNEL_NAMES]
        if unknown or not self.channels:
            raise SettingsError(
                f"NOTIFY_CHANNELS={','.join(self.channels)!r} must name one or more of "
                f"{', '.join(CHANNEL_NAMES)}"
            )
        horizon = self.delivery_horizon_seconds
        if self.sent_ttl_seconds <= horizon:
            raise SettingsError(
                f"NOTIFY_SENT_TTL_SECONDS={self.sent_ttl_seconds} must exceed the retry and "
                f"schedule horizon of {horizon:.0f}s, or a late redelivery could send twice"
            )

    @property
    def queue(self) -> ConsumerQueue:
        return self.topology.topology().queue(self.topology.notifications_queue)

    @property
    def delivery_horizon_seconds(self) -> float:
        """How long after an event a redelivery of it can still arrive without an operator."""
        delays = self.topology.notification_delays
        retries = sum(delays[min(i, len(delays) - 1)] for i in range(self.max_attempts))
        return retries + self.max_schedule_ahead_seconds + self.reminder_minutes * 60

    @property
    def claim_seconds(self) -> float:
        timeouts = [0.0]
        if "smtp" in self.channels:
            timeouts.append(self.smtp.timeout)
        if "webhook" in self.channels:
            timeouts.append(self.webhook.timeout)
        return max(timeouts) + CLAIM_MARGIN_SECONDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NotificationSettings:
        env = Env(environ)
        d = cls()
        channels = env.text_list("NOTIFY_CHANNELS", "log")
        return cls(
            http_host=env.text("NOTIFY_HTTP_HOST", d.http_host),
            http_port=env.integer("NOTIFY_HTTP_PORT", d.http_port, min_value=0),
            rabbitmq_url=env.credential("RABBITMQ_URL", d.rabbitmq_url),
            redis_url=env.credential("REDIS_URL", d.redis_url),
            redis_prefix=env.text("NOTIFY_REDIS_PREFIX", d.redis_prefix),
            topology=TopologySettings.from_env(env),
            channels=channels,
            smtp=SmtpSettings.from_env(env),
            webhook=WebhookSettings.from_env(env, required="webhook" in channels),
            prefetch=env.integer("NOTIFY_PREFETCH", d.prefetch, min_value=1),
            concurrency=env.integer("NOTIFY_CONCURRENCY", d.concurrency, min_value=1),
            batch_size=env.integer("NOTIFY_BATCH_SIZE", d.batch_size, min_value=1),
            channel_concurrency=env.integer(
                "NOTIFY_CHANNEL_CONCURRENCY", d.channel_concurrency, min_value=1
            ),
            max_attempts=env.integer("NOTIFY_MAX_ATTEMPTS", d.max_attempts, min_value=1),
            reminder_minutes=env.number("NOTIFY_REMINDER_MINUTES", d.reminder_minutes, min_value=0),
            max_schedule_ahead_seconds=env.number(
                "NOTIFY_MAX_SCHEDULE_AHEAD_SECONDS", d.max_schedule_ahead_seconds, min_value=0
            ),
            sent_ttl_seconds=env.integer(
                "NOTIFY_SENT_TTL_SECONDS", d.sent_ttl_seconds, min_value=1
            ),
            audit_ttl_seconds=env.integer(
                "NOTIFY_AUDIT_TTL_SECONDS", d.audit_ttl_seconds, min_value=1
            ),
            shutdown_timeout=env.number(
                "NOTIFY_SHUTDOWN_TIMEOUT_SECONDS", d.shutdown_timeout, min_value=0.1
            ),
            scheduled_gauge_interval=env.number(
                "NOTIFY_SCHEDULED_GAUGE_SECONDS", d.scheduled_gauge_interval, min_value=0.1
            ),
            api_keys=env.text_list("NOTIFY_API_KEYS", ""),
            log_level=env.choice("LOG_LEVEL", ("debug", "info", "warning", "error"), d.log_level),
        )
