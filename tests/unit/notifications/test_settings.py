"""Settings are read once and fail loudly, naming the setting."""

from __future__ import annotations

import pytest

from common.settings import SettingsError
from notification_worker.settings import NotificationSettings


def test_defaults_send_to_the_log_only_with_no_reminder():
    settings = NotificationSettings.from_env({"ORDERFLOW_ENV": "local"})
    assert settings.channels == ("log",)
    assert settings.reminder_minutes == 0
    assert settings.http_port == 8082
    assert settings.queue.name == "notifications.orders"


def test_the_webhook_channel_needs_its_url_and_secret():
    with pytest.raises(SettingsError, match="NOTIFY_WEBHOOK_URL"):
        NotificationSettings.from_env({"ORDERFLOW_ENV": "local", "NOTIFY_CHANNELS": "log,webhook"})
    settings = NotificationSettings.from_env(
        {
            "ORDERFLOW_ENV": "local",
            "NOTIFY_CHANNELS": "log,webhook",
            "NOTIFY_WEBHOOK_URL": "http://h/x",
            "NOTIFY_WEBHOOK_SECRET": "s",
            "NOTIFY_WEBHOOK_TIMEOUT_SECONDS": "3",
        }
    )
    assert settings.channels == ("log", "webhook")
    assert settings.claim_seconds == 8


def test_an_unknown_channel_is_named():
    with pytest.raises(SettingsError, match="NOTIFY_CHANNELS"):
        NotificationSettings.from_env({"ORDERFLOW_ENV": "local", "NOTIFY_CHANNELS": "log,pigeon"})


def test_a_sent_record_ttl_shorter_than_the_delivery_horizon_is_refused():
    with pytest.raises(SettingsError, match="NOTIFY_SENT_TTL_SECONDS"):
        NotificationSettings.from_env({"ORDERFLOW_ENV": "local", "NOTIFY_SENT_TTL_SECONDS": "600"})
