"""The broker topology's settings are declared like every other (issue 14): read once by name,
typed, bounded, the same in every process, and an invalid one stops the process at start."""

from __future__ import annotations

import pytest

from analytics_service.settings import AnalyticsSettings
from common.messaging.topology import TopologySettings
from common.settings import Env, SettingsError
from notification_worker.__main__ import main as notification_main
from notification_worker.settings import NotificationSettings
from order_service.__main__ import main as order_main
from order_service.settings import OrderSettings

LOCAL = {"ORDERFLOW_ENV": "local"}
SERVICES = (OrderSettings, AnalyticsSettings, NotificationSettings)
INVALID = [
    ("ANALYTICS_RETRY_DELAYS", "1,x"),
    ("NOTIFICATION_RETRY_DELAYS", "0"),
    ("ORDER_FULFILMENT_RETRY_DELAYS", "-1"),
    ("ORDER_SCHEDULER_DELAYS", "soon"),
    ("RABBITMQ_QUORUM_GROUP_SIZE", "0"),
    ("RABBITMQ_QUORUM_GROUP_SIZE", "three"),
]


@pytest.mark.parametrize("settings_cls", SERVICES)
@pytest.mark.parametrize(("name", "value"), INVALID)
def test_an_invalid_topology_setting_fails_at_start_naming_it(settings_cls, name, value):
    with pytest.raises(SettingsError, match=name):
        settings_cls.from_env({**LOCAL, name: value})


def test_every_process_reads_the_same_declared_topology():
    env = {
        **LOCAL,
        "ORDERS_EXCHANGE": "shop",
        "ANALYTICS_QUEUE": "shop.analytics",
        "NOTIFICATION_RETRY_DELAYS": "2,20",
        "RABBITMQ_QUORUM_GROUP_SIZE": "3",
    }
    read = {cls.from_env(env).topology for cls in SERVICES}
    assert read == {
        TopologySettings(
            exchange="shop",
            analytics_queue="shop.analytics",
            notification_delays=(2.0, 20.0),
            quorum_group_size=3,
        )
    }
    (topology,) = read
    # Unset, the order service's own queues derive from the exchange.
    assert topology.fulfilment_queue == "shop.fulfilment"
    assert topology.scheduler_queue == "shop.scheduler"


def test_unset_the_topology_is_the_default_one():
    assert TopologySettings.from_env(Env(LOCAL)) == TopologySettings()


@pytest.mark.parametrize("main", [order_main, notification_main])
def test_a_process_given_an_invalid_topology_setting_exits_2_naming_it(main, monkeypatch, capsys):
    monkeypatch.setenv("ORDERFLOW_ENV", "local")
    monkeypatch.setenv("RABBITMQ_QUORUM_GROUP_SIZE", "three")
    assert main([]) == 2
    assert "RABBITMQ_QUORUM_GROUP_SIZE" in capsys.readouterr().err
