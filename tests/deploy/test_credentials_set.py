"""Outside local development the credential settings have no default (common/settings.py
Env.credential): docker-compose and Kubernetes must hand each process every one it reads, and
never claim to be local (ORDERFLOW_ENV=local)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

# What each command reads as a credential (its settings' env.credential calls).
NEEDS = {
    ("order_service", "migrate"): {"ORDER_DATABASE_URL"},
    ("order_service", "serve"): {"ORDER_DATABASE_URL", "RABBITMQ_URL", "REDIS_URL"},
    ("order_service", "fulfilment"): {"ORDER_DATABASE_URL", "RABBITMQ_URL", "REDIS_URL"},
    ("analytics_service", "migrate"): {"ANALYTICS_DATABASE_URL"},
    ("analytics_service", "api"): {"ANALYTICS_DATABASE_URL", "RABBITMQ_URL", "REDIS_URL"},
    ("analytics_service", "consumer"): {"ANALYTICS_DATABASE_URL", "RABBITMQ_URL", "REDIS_URL"},
    ("notification_worker", "serve"): {"RABBITMQ_URL", "REDIS_URL"},
}


def _needs(argv: list[str]) -> set[str]:
    module = argv[2]
    default = "api" if module == "analytics_service" else "serve"
    command = argv[3] if len(argv) > 3 else default
    return NEEDS[(module, command)]


def _compose_services() -> list[tuple[str, list[str], dict[str, Any]]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return [
        (name, spec["command"], spec.get("environment", {}))
        for name, spec in compose["services"].items()
        if isinstance(spec.get("command"), list) and spec["command"][:2] == ["python", "-m"]
    ]


def _k8s_containers() -> list[tuple[str, list[str], set[str]]]:
    found = []
    for path in (ROOT / "deploy" / "k8s" / "base").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "Deployment":
                continue
            pod = doc["spec"]["template"]["spec"]
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                names = {e["name"] for e in c.get("env", [])}
                # envFrom the ConfigMap holds no credential; Secrets are named in env.
                found.append((f"{path.name}:{c['name']}", c["args"], names))
    return found


def test_the_scan_finds_every_process() -> None:
    assert len(_compose_services()) >= 6
    assert len(_k8s_containers()) >= 6


@pytest.mark.parametrize(("name", "argv", "env"), _compose_services())
def test_compose_hands_each_process_every_credential_it_reads(name, argv, env) -> None:
    environment = {**env}
    missing = _needs(argv) - set(environment)
    assert not missing, f"{name} lacks {missing}"
    assert environment.get("ORDERFLOW_ENV") in (None, ""), name


@pytest.mark.parametrize(("name", "argv", "env"), _k8s_containers())
def test_kubernetes_hands_each_container_every_credential_it_reads(name, argv, env) -> None:
    missing = _needs(argv) - env
    assert not missing, f"{name} lacks {missing}"
    assert "ORDERFLOW_ENV" not in env, name
