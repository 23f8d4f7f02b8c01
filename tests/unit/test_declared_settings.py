"""A declared setting is read by its declaration: its type and its bounds fail by name."""

from __future__ import annotations

import pytest

from analytics_service.settings import AnalyticsSettings
from common.declared_settings import declared
from common.settings import SettingsError
from notification_worker.settings import NotificationSettings
from order_service.settings import OrderSettings

LOCAL = {"ORDERFLOW_ENV": "local"}
CASES = [
    (cls, spec.env, hint, spec.min_value)
    for cls in (AnalyticsSettings, NotificationSettings, OrderSettings)
    for spec, hint, _ in declared(cls)
    if hint in (int, float, bool)
]


@pytest.mark.parametrize(("cls", "name", "hint", "floor"), CASES)
def test_a_value_not_of_the_declared_type_fails_at_start_naming_the_variable(
    cls, name, hint, floor
):
    with pytest.raises(SettingsError, match=name):
        cls.from_env({**LOCAL, name: "not-a-value"})


@pytest.mark.parametrize(("cls", "name", "hint", "floor"), [c for c in CASES if c[3] is not None])
def test_a_value_below_the_declared_minimum_fails_at_start_naming_the_variable(
    cls, name, hint, floor
):
    with pytest.raises(SettingsError, match=name):
        cls.from_env({**LOCAL, name: str(floor - 1)})


def test_a_declared_value_reaches_the_settings_including_nested_ones():
    settings = NotificationSettings.from_env(
        {**LOCAL, "NOTIFY_SMTP_PORT": "2525", "NOTIFY_CHANNELS": "log,smtp", "NOTIFY_PREFETCH": "7"}
    )
    assert (settings.smtp.port, settings.channels, settings.prefetch) == (2525, ("log", "smtp"), 7)


def test_secrets_stay_out_of_the_settings_repr():
    settings = NotificationSettings.from_env(
        {**LOCAL, "NOTIFY_SMTP_PASSWORD": "hunter2", "NOTIFY_API_KEYS": "k-123"}
    )
    assert "hunter2" not in repr(settings) and "k-123" not in repr(settings)
