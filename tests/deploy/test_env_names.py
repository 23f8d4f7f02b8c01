"""Every setting that docker-compose and Kubernetes hand to a service is one the code reads."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "order_service", "analytics_service", "notification_worker")
APP_SERVICES = (
    "order-migrate",
    "analytics-migrate",
    "order-service",
    "analytics-api",
    "analytics-consumer",
    "notification-worker",
)
# Kubernetes only: pieces that RABBITMQ_URL is composed from with $(VAR) expansion.
COMPOSITION_ONLY = {"RABBITMQ_USERNAME", "RABBITMQ_PASSWORD"}


def names_read_by_code() -> set[str]:
    names: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and node.value.isupper()
                    and node.value.replace("_", "").isalnum()
                ):
                    names.add(node.value)
    return names


def test_compose_passes_only_settings_the_code_reads() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    read = names_read_by_code()
    unknown = {
        name: sorted(set(compose["services"][name]["environment"]) - read) for name in APP_SERVICES
    }
    assert not any(unknown.values()), unknown


def _k8s_env_names() -> set[str]:
    names: set[str] = set()
    base = ROOT / "deploy" / "k8s" / "base"
    for path in base.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            names |= _names_in(doc)
    return names


def _names_in(doc: Any) -> set[str]:
    if not isinstance(doc, dict):
        return set()
    if doc.get("kind") in ("ConfigMap", "Secret") and doc["metadata"]["name"].startswith(
        "orderflow-"
    ):
        return set(doc.get("data", {})) | set(doc.get("stringData", {}))
    names: set[str] = set()
    if doc.get("kind") == "Deployment":
        pod = doc["spec"]["template"]["spec"]
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            names |= {e["name"] for e in container.get("env", [])}
    return names


def test_kubernetes_passes_only_settings_the_code_reads() -> None:
    unknown = sorted(_k8s_env_names() - names_read_by_code() - COMPOSITION_ONLY)
    assert not unknown
