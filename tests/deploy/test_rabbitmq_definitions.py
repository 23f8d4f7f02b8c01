"""The RabbitMQ definitions files are exactly what the topology code generates, and the users
they create have least-privilege permissions."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest

from common.messaging.topology import TopologySettings
from deploy.rabbitmq.generate_definitions import (
    DEFINITIONS_PATH,
    USERS,
    build_definitions,
    permissions_for,
    render_all,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted(render_all()), ids=lambda p: str(p.relative_to(ROOT)))
def test_generated_file_matches_the_topology_in_code(path: Path) -> None:
    expected = render_all()[path]
    assert path.exists(), f"{path} missing: run python deploy/rabbitmq/generate_definitions.py"
    assert path.read_text() == expected, (
        f"{path.relative_to(ROOT)} is out of date with common/messaging/topology.py; "
        "run: python deploy/rabbitmq/generate_definitions.py"
    )


def test_definitions_declare_every_queue_the_services_declare_as_quorum() -> None:
    topology = TopologySettings().topology()
    definitions = build_definitions()
    queues = {q["name"]: q["arguments"] for q in definitions["queues"]}
    for spec in topology.queues:
        assert queues[spec.name] == spec.work_arguments()
        assert queues[spec.dlq] == spec.dlq_arguments()
        for delay in spec.retry_delays:
            assert queues[spec.retry_queue(delay)] == spec.retry_arguments(delay)
    assert all(args["x-queue-type"] == "quorum" for args in queues.values())
    assert {b["destination"] for b in definitions["bindings"]} == {s.name for s in topology.queues}


def _env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_password_hashes_match_the_documented_local_defaults() -> None:
    env = _env_example()
    hashes = {u["name"]: u["password_hash"] for u in build_definitions()["users"]}
    for user in USERS:
        assert env[user.password_env] == user.local_password, user.password_env
        raw = base64.b64decode(hashes[user.name])
        salt, digest = raw[:4], raw[4:]
        assert hashlib.sha256(salt + user.local_password.encode()).digest() == digest


def test_no_guest_user_and_an_admin_for_the_management_ui() -> None:
    users = {u["name"]: u for u in build_definitions()["users"]}
    assert "guest" not in users
    assert [n for n, u in users.items() if "administrator" in u["tags"]] == ["orderflow-admin"]


def _allows(pattern: str, resource: str) -> bool:
    return re.search(pattern, resource) is not None


def test_order_service_can_publish_and_declare_but_read_no_other_services_queue() -> None:
    settings = TopologySettings()
    topology = settings.topology()
    own = {settings.fulfilment_queue, settings.scheduler_queue}
    perms = permissions_for(next(u for u in USERS if u.name == "order-service"), settings)
    assert _allows(perms["write"], "orders")
    for spec in topology.queues:
        for name in (spec.name, spec.dlq, *spec.retry_queues):
            assert _allows(perms["configure"], name)
            if spec.name not in own:
                assert not _allows(perms["read"], name), name
                assert name == spec.name or not _allows(perms["write"], name), name


def test_order_service_consumes_and_retries_only_its_own_fulfilment_and_scheduler_queues() -> None:
    settings = TopologySettings()
    topology = settings.topology()
    perms = permissions_for(next(u for u in USERS if u.name == "order-service"), settings)
    assert {settings.fulfilment_queue, settings.scheduler_queue} == {
        "orders.fulfilment",
        "orders.scheduler",
    }
    for name in (settings.fulfilment_queue, settings.scheduler_queue):
        spec = topology.queue(name)
        assert _allows(perms["read"], spec.name) and _allows(perms["read"], spec.dlq)
        for queue in (spec.dlq, *spec.retry_queues):
            assert _allows(perms["write"], queue)
    assert _allows(perms["write"], "amq.default")


@pytest.mark.parametrize(
    ("user_name", "own", "other"),
    [
        ("analytics-service", "analytics.orders", "notifications.orders"),
        ("notification-worker", "notifications.orders", "analytics.orders"),
    ],
)
def test_a_consumer_reaches_only_its_own_queues(user_name: str, own: str, other: str) -> None:
    settings = TopologySettings()
    topology = settings.topology()
    perms = permissions_for(next(u for u in USERS if u.name == user_name), settings)
    mine, theirs = topology.queue(own), topology.queue(other)
    assert _allows(perms["read"], mine.name) and _allows(perms["read"], mine.dlq)
    assert _allows(perms["write"], "amq.default")  # republish to its retry tiers and DLQ
    for name in (mine.name, mine.dlq, *mine.retry_queues):
        assert _allows(perms["configure"], name)
    for name in (theirs.name, theirs.dlq, *theirs.retry_queues):
        for kind in ("configure", "write", "read"):
            assert not _allows(perms[kind], name), (kind, name)
    assert not _allows(perms["write"], "orders")  # consumers never publish events


def test_committed_definitions_path_is_the_one_compose_mounts() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    assert str(DEFINITIONS_PATH.relative_to(ROOT)) in compose
