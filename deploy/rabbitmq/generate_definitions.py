"""Generates the RabbitMQ definitions from the topology the services declare (common.messaging).

One source of truth: the exchange, queues, retry tiers, parking lots and their arguments come from
``TopologySettings().topology()``, so the broker preloaded by docker-compose or Kubernetes holds
exactly what every service would declare itself. A test regenerates the files and compares.

    python deploy/rabbitmq/generate_definitions.py            # rewrite the committed files
    python deploy/rabbitmq/generate_definitions.py --check    # exit 1 if a file is out of date
    python deploy/rabbitmq/generate_definitions.py --from-env --output /tmp/definitions.json
        # real passwords (RABBITMQ_*_PASSWORD) and topology settings from the environment;
        # write the result somewhere that is not committed and point RABBITMQ_DEFINITIONS_FILE at it

The committed ``definitions.json`` holds hashes of the documented *local* default passwords only
(see .env.example); the hashes use a salt derived from the user name so the file is reproducible.
Passwords taken from the environment get a random salt.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import secrets
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere, without installing the project
    sys.path.insert(0, str(ROOT))

from common.messaging.topology import ConsumerQueue, Topology, TopologySettings  # noqa: E402
from common.settings import Env  # noqa: E402

__all__ = [
    "DEFINITIONS_PATH",
    "K8S_DEFINITIONS_PATH",
    "K8S_USERS_PATH",
    "USERS",
    "VHOST",
    "BrokerUser",
    "build_definitions",
    "build_k8s_topology_definitions",
    "build_k8s_users",
    "hash_password",
    "permissions_for",
    "render_all",
]

VHOST = "orderflow"
DEFINITIONS_PATH = ROOT / "deploy" / "rabbitmq" / "definitions.json"
K8S_DEFINITIONS_PATH = ROOT / "deploy" / "k8s" / "base" / "rabbitmq" / "definitions.json"
K8S_USERS_PATH = ROOT / "deploy" / "k8s" / "base" / "rabbitmq" / "users.yaml"
K8S_CLUSTER_NAME = "orderflow-rabbitmq"
DEFAULT_EXCHANGE = "amq.default"
LOCAL_SALT_PREFIX = b"orderflow-local-definitions:"


@dataclass(frozen=True)
class BrokerUser:
    """One broker account: ``role`` decides its permissions (see ``permissions_for``)."""

    name: str
    role: str  # "publisher", "consumer", "admin"
    password_env: str
    local_password: str
    consumes: str | None = None  # which TopologySettings queue attribute it consumes
    # A publisher that also consumes queues of its own (the order service's fulfilment and
    # scheduler queues): TopologySettings queue attributes.
    owns: tuple[str, ...] = ()


USERS: tuple[BrokerUser, ...] = (
    BrokerUser(
        "order-service",
        "publisher",
        "RABBITMQ_ORDER_SERVICE_PASSWORD",
        "order-service-local",
        owns=("fulfilment_queue", "scheduler_queue"),
    ),
    BrokerUser(
        "analytics-service",
        "consumer",
        "RABBITMQ_ANALYTICS_PASSWORD",
        "analytics-service-local",
        consumes="analytics_queue",
    ),
    BrokerUser(
        "notification-worker",
        "consumer",
        "RABBITMQ_NOTIFICATIONS_PASSWORD",
        "notification-worker-local",
        consumes="notifications_queue",
    ),
    BrokerUser("orderflow-admin", "admin", "RABBITMQ_ADMIN_PASSWORD", "orderflow-admin-local"),
)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = secrets.token_bytes(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def _local_salt(user: str) -> bytes:
    return hashlib.sha256(LOCAL_SALT_PREFIX + user.encode()).digest()[:4]


def _exact(names: Iterable[str]) -> str:
    """A permission regex matching exactly these resource names and nothing else."""
    unique = sorted(set(names))
    if not unique:
        return "^$"  # RabbitMQ's "nothing"
    return "^(" + "|".join(re.escape(n) for n in unique) + ")$"


def _queue_names(spec: ConsumerQueue) -> list[str]:
    return [spec.name, *spec.retry_queues, spec.dlq]


def permissions_for(user: BrokerUser, settings: TopologySettings) -> dict[str, str]:
    """Least privilege per role, following what the code does (AMQP 0-9-1 access control):

    - queue.declare / exchange.declare need *configure* on the resource; queue.bind needs
      *write* on the queue and *read* on the exchange; basic.publish needs *write* on the
      exchange (``amq.default`` for the default exchange); consume, get and purge need *read*.
    - The order service applies the whole topology at start (so no event is unroutable before
      a consumer first starts) and publishes to the exchange. It reads no other service's
      queue; it consumes its own (fulfilment, scheduler) like a consumer does its own.
    - A consumer declares and binds only its own queues, consumes its work queue and its parking
      lot (the DLQ tool lists, replays and purges it) and republishes to its retry tiers and
      parking lot through the default exchange.
    """
    topology = settings.topology()
    exchange = topology.exchange
    if user.role == "admin":
        return {"configure": ".*", "write": ".*", "read": ".*"}
    if user.role == "publisher":
        all_queues = [n for spec in topology.queues for n in _queue_names(spec)]
        work_queues = [spec.name for spec in topology.queues]
        owned = [topology.queue(getattr(settings, attr)) for attr in user.owns]
        own_names = [n for spec in owned for n in _queue_names(spec)]
        return {
            "configure": _exact([exchange, *all_queues]),
            "write": _exact(
                [exchange, *work_queues, *own_names, *([DEFAULT_EXCHANGE] if owned else [])]
            ),
            # Its own queues in full: declaring a retry tier (x-dead-letter-exchange) needs
            # read on it, as for a consumer; other services' queues stay unreadable.
            "read": _exact([exchange, *own_names]),
        }
    if user.role == "consumer":
        if user.consumes is None:
            raise ValueError(f"consumer {user.name} names no queue")
        spec = topology.queue(getattr(settings, user.consumes))
        own = _queue_names(spec)
        return {
            "configure": _exact([exchange, *own]),
            "write": _exact([DEFAULT_EXCHANGE, *own]),
            # Declaring a queue with x-dead-letter-exchange needs read on that queue (RabbitMQ
            # checks it), so the retry tiers are readable too; other consumers' queues are not.
            "read": _exact([exchange, *own]),
        }
    raise ValueError(f"unknown role {user.role!r} for {user.name}")


def _check_owners(topology: Topology, settings: TopologySettings) -> None:
    owned = {getattr(settings, u.consumes) for u in USERS if u.consumes}
    owned |= {getattr(settings, attr) for u in USERS for attr in u.owns}
    stray = [q.name for q in topology.queues if q.name not in owned]
    if stray:
        raise SystemExit(
            f"queues without an owning broker user: {stray}; add a BrokerUser in "
            f"{Path(__file__).name} so its consumer gets permissions"
        )


def _topology_sections(topology: Topology) -> dict[str, list[dict[str, Any]]]:
    queues: list[dict[str, Any]] = []
    bindings: list[dict[str, Any]] = []
    for spec in topology.queues:
        declared = [(spec.name, spec.work_arguments())]
        declared += [(spec.retry_queue(d), spec.retry_arguments(d)) for d in spec.retry_delays]
        declared.append((spec.dlq, spec.dlq_arguments()))
        queues += [
            {"name": name, "vhost": VHOST, "durable": True, "auto_delete": False, "arguments": args}
            for name, args in declared
        ]
        bindings += [
            {
                "source": topology.exchange,
                "vhost": VHOST,
                "destination": spec.name,
                "destination_type": "queue",
                "routing_key": key,
                "arguments": {},
            }
            for key in spec.bindings
        ]
    exchanges = [
        {
            "name": topology.exchange,
            "vhost": VHOST,
            "type": topology.exchange_type,
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        }
    ]
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}


def build_definitions(
    settings: TopologySettings | None = None, passwords: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The docker-compose definitions: vhost, users, permissions and the whole topology.

    ``passwords`` maps user name to a real password; users not in it get the local default with
    a reproducible salt.
    """
    settings = settings or TopologySettings()
    topology = settings.topology()
    _check_owners(topology, settings)
    passwords = passwords or {}
    users = []
    for user in USERS:
        real = passwords.get(user.name)
        users.append(
            {
                "name": user.name,
                "password_hash": (
                    hash_password(real)
                    if real is not None
                    else hash_password(user.local_password, _local_salt(user.name))
                ),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": ["administrator"] if user.role == "admin" else [],
                "limits": {},
            }
        )
    permissions = [
        {"user": user.name, "vhost": VHOST, **permissions_for(user, settings)} for user in USERS
    ]
    return {
        "users": users,
        "vhosts": [
            {
                "name": VHOST,
                "limits": [],
                "metadata": {
                    "description": "orderflow: orders exchange, consumer queues, retry tiers, DLQs",
                    "tags": [],
                },
            }
        ],
        "permissions": permissions,
        "topic_permissions": [],
        "parameters": [],
        "global_parameters": [],
        "policies": [],
        **_topology_sections(topology),
    }


def build_k8s_topology_definitions(settings: TopologySettings | None = None) -> dict[str, Any]:
    """Kubernetes: vhost and topology only. Users come from the Messaging Topology Operator with
    generated credentials (users.yaml), so no password hash ships in a ConfigMap."""
    settings = settings or TopologySettings()
    topology = settings.topology()
    _check_owners(topology, settings)
    return {
        "vhosts": [{"name": VHOST}],
        "parameters": [],
        "policies": [],
        **_topology_sections(topology),
    }


def build_k8s_users(settings: TopologySettings | None = None) -> list[dict[str, Any]]:
    """User and Permission custom resources (rabbitmq.com/v1beta1, Messaging Topology Operator).

    Without importCredentialsSecret the operator generates a user name and password into the
    Secret ``<name>-user-credentials``; the Deployments build RABBITMQ_URL from it.
    """
    settings = settings or TopologySettings()
    cluster = {"name": K8S_CLUSTER_NAME}
    docs: list[dict[str, Any]] = []
    for user in USERS:
        if user.role == "admin":
            continue  # the cluster operator's default user (secret <cluster>-default-user)
        docs.append(
            {
                "apiVersion": "rabbitmq.com/v1beta1",
                "kind": "User",
                "metadata": {"name": user.name},
                "spec": {"tags": [], "rabbitmqClusterReference": cluster},
            }
        )
        docs.append(
            {
                "apiVersion": "rabbitmq.com/v1beta1",
                "kind": "Permission",
                "metadata": {"name": f"{user.name}-{VHOST}"},
                "spec": {
                    "vhost": VHOST,
                    "userReference": {"name": user.name},
                    "permissions": permissions_for(user, settings),
                    "rabbitmqClusterReference": cluster,
                },
            }
        )
    return docs


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def render_all(settings: TopologySettings | None = None) -> dict[Path, str]:
    """Every committed generated file and its expected content (local default passwords)."""
    header = (
        "# Generated by deploy/rabbitmq/generate_definitions.py from common/messaging/topology.py"
        " - do not edit.\n"
    )
    users = yaml.safe_dump_all(build_k8s_users(settings), sort_keys=False, explicit_start=True)
    return {
        DEFINITIONS_PATH: _json(build_definitions(settings)),
        K8S_DEFINITIONS_PATH: _json(build_k8s_topology_definitions(settings)),
        K8S_USERS_PATH: header + users,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when a committed file differs from the generated one",
    )
    parser.add_argument(
        "--from-env",
        action="store_true",
        help="passwords (RABBITMQ_*_PASSWORD) and topology from the environment",
    )
    parser.add_argument(
        "--output", type=Path, help="with --from-env: where to write the compose definitions"
    )
    args = parser.parse_args(argv)

    if args.from_env:
        env = Env()
        settings = TopologySettings.from_env(env)
        passwords = {u.name: env.text(u.password_env, u.local_password) for u in USERS}
        if args.output is None:
            parser.error("--from-env needs --output (the committed file keeps local defaults)")
        args.output.write_text(_json(build_definitions(settings, passwords)))
        print(f"wrote {args.output}")
        return 0

    stale = []
    for path, content in render_all().items():
        current = path.read_text() if path.exists() else None
        if current == content:
            continue
        if args.check:
            stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)}", file=sys.stderr)
        print("run: python deploy/rabbitmq/generate_definitions.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
