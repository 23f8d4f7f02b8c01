"""Config is typed and loud: a bad setting fails at start with its name."""

from __future__ import annotations

import pytest

from analytics_service.__main__ import main as analytics_main
from analytics_service.settings import AnalyticsSettings
from common.settings import SettingsError
from notification_worker.settings import NotificationSettings
from order_service.__main__ import main as order_main
from order_service.settings import OrderSettings


def test_defaults_work_on_localhost():
    settings = OrderSettings.from_env({"ORDERFLOW_ENV": "local"})
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
        OrderSettings.from_env({"ORDERFLOW_ENV": "local", name: value})


# --- credentials: local defaults only with ORDERFLOW_ENV=local (issue 13, security) ---------

DEPLOYED = {
    "ORDER_DATABASE_URL": "mysql+aiomysql://o:real@db:3306/order_db",
    "ANALYTICS_DATABASE_URL": "mysql+aiomysql://a:real@db:3306/analytics_db",
    "RABBITMQ_URL": "amqp://svc:real@rabbit:5672/orderflow",
    "REDIS_URL": "redis://:real@redis:6379/0",
}
CREDENTIALS = {
    OrderSettings: ("ORDER_DATABASE_URL", "RABBITMQ_URL", "REDIS_URL"),
    AnalyticsSettings: ("ANALYTICS_DATABASE_URL", "RABBITMQ_URL", "REDIS_URL"),
    NotificationSettings: ("RABBITMQ_URL", "REDIS_URL"),
}
CASES = [(cls, name) for cls, names in CREDENTIALS.items() for name in names]


@pytest.mark.parametrize(("settings_cls", "name"), CASES)
@pytest.mark.parametrize("deployment", [None, "production", "staging"])
def test_outside_local_development_a_missing_credential_fails_at_start_naming_it(
    settings_cls, name, deployment
):
    environ = {k: v for k, v in DEPLOYED.items() if k != name}
    if deployment is not None:
        environ["ORDERFLOW_ENV"] = deployment
    with pytest.raises(SettingsError, match=f"{name} is required.*ORDERFLOW_ENV=local"):
        settings_cls.from_env(environ)


@pytest.mark.parametrize("settings_cls", list(CREDENTIALS))
def test_a_deployment_that_sets_every_credential_starts_with_them_and_no_local_default(
    settings_cls,
):
    settings = settings_cls.from_env(dict(DEPLOYED))
    assert "guest" not in settings.rabbitmq_url
    assert settings.redis_url == DEPLOYED["REDIS_URL"]


@pytest.mark.parametrize("settings_cls", list(CREDENTIALS))
def test_the_local_defaults_apply_when_the_process_is_told_it_runs_locally(settings_cls):
    settings = settings_cls.from_env({"ORDERFLOW_ENV": "local"})
    assert settings.rabbitmq_url == "amqp://guest:guest@127.0.0.1:5672/"


@pytest.mark.parametrize(
    ("main", "name"),
    [(order_main, "ORDER_DATABASE_URL"), (analytics_main, "ANALYTICS_DATABASE_URL")],
)
def test_migrate_without_its_database_url_outside_local_exits_2_naming_it(
    main, name, monkeypatch, capsys
):
    monkeypatch.delenv("ORDERFLOW_ENV", raising=False)
    monkeypatch.delenv(name, raising=False)
    assert main(["migrate"]) == 2
    assert name in capsys.readouterr().err


def test_the_outbox_cli_needs_only_the_database_url(monkeypatch):
    monkeypatch.delenv("ORDERFLOW_ENV", raising=False)
    monkeypatch.delenv("RABBITMQ_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("ORDER_DATABASE_URL", "mysql+aiomysql://o:p@127.0.0.1:9/none")
    with pytest.raises(SystemExit) as usage:
        order_main(["outbox", "--help"])  # got past the settings: argparse answers
    assert usage.value.code == 0
