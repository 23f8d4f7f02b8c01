"""RABBITMQ_URL as a list of cluster nodes: parsing, the order nodes are tried in, and the hook
into aio-pika's reconnect loop that makes a robust connection move to the next node."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aio_pika import RobustConnection
from yarl import URL

from common.messaging.connection import (
    FailoverRobustConnection,
    UrlRotation,
    connect_robust_forever,
    parse_broker_urls,
    redact,
)
from common.settings import Env, SettingsError

THREE = (
    "amqp://u:p@127.0.0.1:5781/orderflow,"
    "amqp://u:p@127.0.0.1:5782/orderflow,"
    "amqp://u:p@127.0.0.1:5783/orderflow"
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_single_url_stays_a_list_of_one() -> None:
    assert parse_broker_urls("amqp://guest:guest@127.0.0.1:5672/") == (
        URL("amqp://guest:guest@127.0.0.1:5672/"),
    )


def test_a_comma_separated_list_gives_every_node_in_order() -> None:
    urls = parse_broker_urls(THREE)
    assert [u.port for u in urls] == [5781, 5782, 5783]
    assert {(u.user, u.password, u.path) for u in urls} == {("u", "p", "/orderflow")}


def test_blanks_around_and_between_entries_are_ignored() -> None:
    assert len(parse_broker_urls(f" {THREE.replace(',', ' , ')} ,")) == 3


def test_a_bare_host_and_port_inherits_credentials_and_vhost_from_the_first_url() -> None:
    urls = parse_broker_urls("amqp://u:p@node-a:5672/orderflow,node-b:5673,node-c")
    assert [str(u) for u in urls] == [
        "amqp://u:p@node-a:5672/orderflow",
        "amqp://u:p@node-b:5673/orderflow",
        "amqp://u:p@node-c/orderflow",
    ]


def test_a_full_url_without_credentials_inherits_those_of_the_first() -> None:
    urls = parse_broker_urls("amqp://u:p@a/v,amqp://b:5673/v")
    assert (urls[1].user, urls[1].password, urls[1].port) == ("u", "p", 5673)


@pytest.mark.parametrize("bad", ["", " , ", "http://a/", "amqp://u:p@a/,https://b/", "amqp:///v"])
def test_a_malformed_list_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_broker_urls(bad)


def test_the_setting_names_itself_when_the_list_is_malformed() -> None:
    with pytest.raises(SettingsError, match="RABBITMQ_URL"):
        Env({"RABBITMQ_URL": "amqp://a/,http://b/"}).broker_urls("RABBITMQ_URL", "amqp://x/")


def test_the_setting_keeps_a_valid_list_and_defaults_to_one_url_locally_only() -> None:
    assert Env({"RABBITMQ_URL": THREE}).broker_urls("RABBITMQ_URL", "amqp://x/") == THREE
    local = Env({"ORDERFLOW_ENV": "local"})
    assert local.broker_urls("RABBITMQ_URL", "amqp://x/") == "amqp://x/"
    with pytest.raises(SettingsError, match="RABBITMQ_URL is required"):
        Env({}).broker_urls("RABBITMQ_URL", "amqp://x/")


def test_passwords_never_reach_the_logs() -> None:
    assert redact("amqp://u:secret@a/v") == "amqp://u:******@a/v"


def test_the_rotation_stays_on_a_node_until_it_fails_then_goes_round_the_list() -> None:
    rotation = UrlRotation(parse_broker_urls(THREE))
    assert rotation.current.port == 5781
    assert rotation.failed(rotation.current).port == 5782
    assert rotation.failed(rotation.current).port == 5783
    assert rotation.failed(rotation.current).port == 5781
    assert rotation.switches == 3


def test_a_failure_reported_twice_for_one_node_moves_on_once() -> None:
    rotation = UrlRotation(parse_broker_urls(THREE))
    first = rotation.current
    rotation.failed(first)  # the attempt failed...
    rotation.failed(first)  # ...and closing its half-open connection reports it again
    assert rotation.current.port == 5782


def test_a_single_node_is_retried_in_place() -> None:
    rotation = UrlRotation(parse_broker_urls("amqp://a/"))
    assert rotation.failed(rotation.current) == URL("amqp://a/")
    assert rotation.switches == 0


def test_aio_pika_still_has_the_per_attempt_hook_failover_overrides() -> None:
    # If an aio-pika upgrade renames it, reconnects would silently stick to one node.
    assert callable(getattr(RobustConnection, "_RobustConnection__connect_transport", None))
    assert "_RobustConnection__connect_transport" in FailoverRobustConnection.__dict__


async def test_a_failed_connect_attempt_moves_the_connection_to_the_next_node() -> None:
    urls = parse_broker_urls(f"amqp://g:g@127.0.0.1:{closed_port()}/,127.0.0.1:{closed_port()}")
    connection = FailoverRobustConnection(urls, fail_fast="true")
    with pytest.raises(OSError):
        await connection.connect(timeout=2)
    await connection.close()
    assert connection.rotation.current == urls[1]
    assert connection.rotation.switches == 1


async def test_connecting_forever_keeps_trying_while_no_node_answers() -> None:
    urls = f"amqp://g:g@127.0.0.1:{closed_port()}/,127.0.0.1:{closed_port()}"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            connect_robust_forever(urls, client_name="t", initial_backoff=0.05), 0.5
        )
