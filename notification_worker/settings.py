"""Notification worker settings: read once from the environment at start-up, loud when wrong."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from common.declared_settings import read_settings, setting
from common.messaging.topology import ConsumerQueue, TopologySettings
from common.settings import LOCAL_RABBITMQ_URL, LOCAL_REDIS_URL, LOG_LEVELS, Env, SettingsError

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
    host: str = setting("NOTIFY_SMTP_HOST", "127.0.0.1", "SMTP server host")
    port: int = setting("NOTIFY_SMTP_PORT", 25, "SMTP server port", min_value=1)
    username: str | None = setting("NOTIFY_SMTP_USERNAME", None, "SMTP user (with the password)")
    password: str | None = setting(
        "NOTIFY_SMTP_PASSWORD", None, "SMTP password (with the user)", secret=True
    )
    starttls: bool = setting("NOTIFY_SMTP_STARTTLS", False, "upgrade to TLS with STARTTLS")
    use_tls: bool = setting("NOTIFY_SMTP_TLS", False, "implicit TLS")
    sender: str = setting("NOTIFY_SMTP_FROM", "orders@example.com", "envelope sender")
    recipient: str = setting("NOTIFY_SMTP_TO", "ops@example.com", "envelope recipient")
    timeout: float = setting("NOTIFY_SMTP_TIMEOUT_SECONDS", 10.0, "per-send timeout", min_value=0.1)


@dataclass(frozen=True)
class WebhookSettings:
    # Only demanded when the channel is on (NotificationSettings.from_env), so a log-only
    # worker needs no webhook config.
    url: str = setting("NOTIFY_WEBHOOK_URL", "", "webhook target (required when the channel is on)")
    secret: str = setting(
        "NOTIFY_WEBHOOK_SECRET",
        "",
        "HMAC-SHA256 key (required when the channel is on)",
        secret=True,
    )
    timeout: float = setting(
        "NOTIFY_WEBHOOK_TIMEOUT_SECONDS", 5.0, "per-call timeout", min_value=0.05
    )
    signature_header: str = setting(
        "NOTIFY_WEBHOOK_SIGNATURE_HEADER", "X-Signature-SHA256", "header carrying the signature"
    )


@dataclass(frozen=True)
class NotificationSettings:
    http_host: str = setting("NOTIFY_HTTP_HOST", "127.0.0.1", "metrics/health listen host")
    http_port: int = setting("NOTIFY_HTTP_PORT", 8082, "metrics/health listen port", min_value=0)
    rabbitmq_url: str = setting(
        "RABBITMQ_URL", LOCAL_RABBITMQ_URL, "broker", broker=True, shared=True
    )
    redis_url: str = setting(
        "REDIS_URL", LOCAL_REDIS_URL, "sent-notification store", credential=True, shared=True
    )
    redis_prefix: str = setting("NOTIFY_REDIS_PREFIX", "notif", "key prefix of the sent store")
    topology: TopologySettings = field(default_factory=TopologySettings)
    channels: tuple[str, ...] = setting(
        "NOTIFY_CHANNELS", ("log",), "`log`, `smtp`, `webhook` (comma separated)"
    )
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    prefetch: int = setting("NOTIFY_PREFETCH", 64, "unacked messages", min_value=1)
    # Two workers and a short linger: each batch costs two Redis round trips and its acks
    # whatever its size, and at a steady trickle four workers without a linger made batches of
    # one or two events. Under a backlog batches fill at once and the linger never applies.
    # 0.1 s rather than 0.02: at 60 orders/s the worker's CPU per order fell by a quarter, and
    # a notification 80 ms later is news to no one (docs/benchmark.md).
    concurrency: int = setting("NOTIFY_CONCURRENCY", 2, "batches handled at once", min_value=1)
    batch_linger_seconds: float = setting(
        "NOTIFY_BATCH_LINGER_SECONDS",
        0.1,
        "wait this long for more events before handling a small batch: adds at most this to a"
        " notification's latency when events trickle",
        min_value=0.0,
    )
    batch_size: int = setting(
        "NOTIFY_BATCH_SIZE",
        32,
        "messages per batch; a batch makes one Redis round trip for its claims and one for its"
        " records, and is acked when its slowest send has finished (at most the channel timeout)",
        min_value=1,
    )
    channel_concurrency: int = setting(
        "NOTIFY_CHANNEL_CONCURRENCY", 16, "sends in flight per channel", min_value=1
    )
    max_attempts: int = setting("NOTIFY_MAX_ATTEMPTS", 5, "attempts before parking", min_value=1)
    reminder_minutes: float = setting(
        "NOTIFY_REMINDER_MINUTES", 0.0, "reminder after OrderCreated (0: off)", min_value=0
    )
    max_schedule_ahead_seconds: float = setting(
        "NOTIFY_MAX_SCHEDULE_AHEAD_SECONDS", 86_400.0, "scheduling horizon", min_value=0
    )
    sent_ttl_seconds: int = setting(
        "NOTIFY_SENT_TTL_SECONDS",
        3 * 86_400,
        "de-duplication record lifetime; must exceed the retry and schedule horizon",
        min_value=1,
    )
    audit_ttl_seconds: int = setting(
        "NOTIFY_AUDIT_TTL_SECONDS", 7 * 86_400, "audit record lifetime", min_value=1
    )
    shutdown_timeout: float = setting(
        "NOTIFY_SHUTDOWN_TIMEOUT_SECONDS", 30.0, "drain time on SIGTERM", min_value=0.1
    )
    scheduled_gauge_interval: float = setting(
        "NOTIFY_SCHEDULED_GAUGE_SECONDS", 5.0, "scheduled-pending gauge refresh", min_value=0.1
    )
    api_keys: tuple[str, ...] = setting(
        "NOTIFY_API_KEYS",
        (),
        "comma-separated keys for `POST /notifications/audit` (realm `notifications`); empty:"
        " open (local use). Health and metrics stay open",
        secret=True,
    )
    log_level: str = setting("LOG_LEVEL", "info", "log level", choices=LOG_LEVELS, shared=True)

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
        settings = read_settings(cls, env)
        if "webhook" in settings.channels:
            # Absent, these fail by name ("... is required but not set").
            env.text("NOTIFY_WEBHOOK_URL")
            env.text("NOTIFY_WEBHOOK_SECRET")
        return settings
