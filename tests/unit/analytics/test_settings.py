from __future__ import annotations

import pytest

from analytics_service.settings import AnalyticsSettings
from common.settings import SettingsError


def test_defaults_follow_the_design_ports():
    settings = AnalyticsSettings.from_env({"ORDERFLOW_ENV": "local"})
    assert (settings.http_port, settings.consumer_http_port) == (8081, 8083)
    assert settings.topology.analytics_queue == "analytics.orders"
    assert "analytics_db" in settings.database_url


def test_an_invalid_setting_fails_loudly_by_name():
    with pytest.raises(SettingsError, match="ANALYTICS_PREFETCH"):
        AnalyticsSettings.from_env({"ORDERFLOW_ENV": "local", "ANALYTICS_PREFETCH": "lots"})
    with pytest.raises(SettingsError, match="ANALYTICS_BATCH_SIZE"):
        AnalyticsSettings.from_env({"ORDERFLOW_ENV": "local", "ANALYTICS_BATCH_SIZE": "0"})


def test_the_inbox_is_kept_past_every_retry_tier():
    with pytest.raises(SettingsError, match="ANALYTICS_INBOX_RETENTION_SECONDS"):
        AnalyticsSettings.from_env(
            {
                "ORDERFLOW_ENV": "local",
                "ANALYTICS_RETRY_DELAYS": "1,10,60,600",
                "ANALYTICS_INBOX_RETENTION_SECONDS": "600",
            }
        )
    settings = AnalyticsSettings.from_env(
        {"ORDERFLOW_ENV": "local", "ANALYTICS_INBOX_RETENTION_SECONDS": "86400"}
    )
    assert settings.inbox_retention_seconds == 86400
