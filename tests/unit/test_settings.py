"""Config is typed and loud: a bad setting fails at start with its name."""

from __future__ import annotations

import pytest

from common.settings import SettingsError
from order_service.settings import OrderSettings


def test_defaults_work_on_localhost():
    settings = OrderSettings.from_env({})
    assert settings.http_port == 8080
    assert settings.topology.exchange == "orders"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ORDER_HTTP_PORT", "eighty"),
        ("ORDER_HTTP_PORT", "0"),
        ("ORDER_RELAY_ENABLED", "maybe"),
        ("ANALYTICS_RETRY_DELAYS", "1,x"),
        ("LOG_LEVEL", "loud"),
    ],
)
def test_invalid_setting_names_itself(name, value):
    with pytest.raises(SettingsError, match=name):
        OrderSettings.from_env({name: value})
