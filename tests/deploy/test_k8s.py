"""The Kubernetes manifests render (kustomize base + overlay) and validate offline against the
Kubernetes JSON schemas (kubernetes-validate) and the operators' custom resource schemas."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.deploy.k8s_crd_schemas import SCHEMAS
from tests.deploy.k8s_render import render, render_fallback, render_with_kubectl
from tests.deploy.tools import INSTALL_HINT

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TARGETS = [K8S / "base", K8S / "overlays" / "production"]
KUBERNETES_VERSION = "1.30"
HTTP = {
    "order-service": 8080,
    "analytics-api": 8081,
    "analytics-consumer": 8083,
    "notification-worker": 8082,
}


@pytest.fixture(scope="module", params=TARGETS, ids=lambda p: str(p.relative_to(K8S)))
def manifests(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


def _kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail(f"kubernetes-validate (PyPI) is not installed; {INSTALL_HINT}", pytrace=False)
    return kubernetes_validate


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_manifest_validates_against_its_schema(manifests: list[dict[str, Any]]) -> None:
    kv = _kubernetes_validate()
    errors = []
    for doc in manifests:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            if doc["kind"] in SCHEMAS:
                jsonschema.validate(doc, SCHEMAS[doc["kind"]])
            else:
                kv.validate(doc, KUBERNETES_VERSION, strict=True)
        except jsonschema.ValidationError as exc:
            errors.append(f"{where}: {exc.message} at {list(exc.absolute_path)}")
        except kv.SchemaNotFoundError:
            errors.append(f"{where}: no schema (add one to tests/deploy/k8s_crd_schemas.py)")
    assert not errors, "\n".join(errors)


def test_each_process_has_a_deployment_with_probes_resources_and_scrape_annotations(
    manifests: list[dict[str, Any]],
) -> None:
    deployments = _by_kind(manifests, "Deployment")
    assert set(deployments) == set(HTTP)
    for name, port in HTTP.items():
        template = deployments[name]["spec"]["template"]
        container = template["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["requests"]["memory"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert container["ports"][0]["containerPort"] == port
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True
        env = {e["name"]: e for e in container["env"]}
        assert env["RABBITMQ_URL"]["value"].endswith("@orderflow-rabbitmq:5672/orderflow")
        assert deployments[name]["spec"]["replicas"] >= 2, name


def test_consumers_autoscale(manifests: list[dict[str, Any]]) -> None:
    hpas = _by_kind(manifests, "HorizontalPodAutoscaler")
    assert set(hpas) == {"analytics-consumer", "notification-worker"}
    for hpa in hpas.values():
        assert hpa["spec"]["minReplicas"] >= 2


def test_rabbitmq_is_a_three_node_cluster_loading_the_generated_quorum_topology(
    manifests: list[dict[str, Any]],
) -> None:
    cluster = _by_kind(manifests, "RabbitmqCluster")["orderflow-rabbitmq"]
    assert cluster["spec"]["replicas"] == 3
    assert "load_definitions" in cluster["spec"]["rabbitmq"]["additionalConfig"]
    definitions_map = _by_kind(manifests, "ConfigMap")["orderflow-rabbitmq-definitions"]
    definitions = json.loads(definitions_map["data"]["definitions.json"])
    work = [q for q in definitions["queues"] if not re.search(r"\.(retry\..+|dlq)$", q["name"])]
    assert {q["name"] for q in work} == {
        "analytics.orders",
        "notifications.orders",
        "orders.fulfilment",
        "orders.scheduler",
    }
    assert all(q["arguments"]["x-queue-type"] == "quorum" for q in definitions["queues"])
    assert "users" not in definitions  # credentials come from the topology operator
    users = _by_kind(manifests, "User")
    assert set(users) == {"order-service", "analytics-service", "notification-worker"}


def test_mysql_and_redis_are_external_services(manifests: list[dict[str, Any]]) -> None:
    services = _by_kind(manifests, "Service")
    for name in ("order-db", "analytics-db", "redis"):
        assert services[name]["spec"]["type"] == "ExternalName"


def test_fallback_renderer_agrees_with_kubectl_kustomize() -> None:
    for target in TARGETS:
        rendered = render_with_kubectl(target)
        if rendered is None:
            continue  # no kubectl: the fallback is what the other tests used
        fallback = render_fallback(target)

        def key(doc: dict[str, Any]) -> tuple[str, str]:
            return doc["kind"], doc["metadata"]["name"]

        assert sorted(map(key, rendered)) == sorted(map(key, fallback))
        by_key = {key(d): d for d in fallback}
        for doc in rendered:
            assert doc.get("spec") == by_key[key(doc)].get("spec"), key(doc)
            assert doc.get("data") == by_key[key(doc)].get("data"), key(doc)
