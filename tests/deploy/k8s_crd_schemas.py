"""JSON schemas for the custom resources the manifests use (RabbitMQ Cluster Operator and
Messaging Topology Operator, rabbitmq.com/v1beta1): the fields we set, typed as in the operators'
CRDs, unknown fields rejected so a typo fails. kubernetes-validate covers the built-in kinds."""

from __future__ import annotations

from typing import Any

_OBJ: dict[str, Any] = {"type": "object"}
_STR: dict[str, Any] = {"type": "string"}
_CLUSTER_REF = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {"name": _STR, "namespace": _STR},
}
_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"requests": _OBJ, "limits": _OBJ, "claims": {"type": "array"}},
}


def _resource(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "rabbitmq.com/v1beta1"},
            "kind": {"const": kind},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": spec,
        },
    }


SCHEMAS: dict[str, dict[str, Any]] = {
    "RabbitmqCluster": _resource(
        "RabbitmqCluster",
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "image": _STR,
                "imagePullSecrets": {"type": "array"},
                "service": _OBJ,
                "persistence": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "storage": {"type": ["string", "integer"]},
                        "storageClassName": _STR,
                    },
                },
                "resources": _RESOURCES,
                "affinity": _OBJ,
                "tolerations": {"type": "array"},
                "rabbitmq": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "additionalPlugins": {"type": "array", "items": _STR, "maxItems": 100},
                        "additionalConfig": {"type": "string", "maxLength": 2000},
                        "advancedConfig": {"type": "string", "maxLength": 100000},
                        "envConfig": {"type": "string", "maxLength": 100000},
                        "erlangInetConfig": {"type": "string", "maxLength": 2000},
                    },
                },
                "tls": _OBJ,
                "skipPostDeployTasks": {"type": "boolean"},
                "terminationGracePeriodSeconds": {"type": "integer", "minimum": 0},
                "delayStartSeconds": {"type": "integer", "minimum": 0},
                "secretBackend": _OBJ,
                "override": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"statefulSet": _OBJ, "service": _OBJ},
                },
            },
        },
    ),
    "User": _resource(
        "User",
        {
            "type": "object",
            "required": ["rabbitmqClusterReference"],
            "additionalProperties": False,
            "properties": {
                "tags": {
                    "type": "array",
                    "items": {"enum": ["management", "policymaker", "monitoring", "administrator"]},
                },
                "rabbitmqClusterReference": _CLUSTER_REF,
                "importCredentialsSecret": {"type": "object", "properties": {"name": _STR}},
            },
        },
    ),
    "Permission": _resource(
        "Permission",
        {
            "type": "object",
            "required": ["vhost", "permissions", "rabbitmqClusterReference"],
            "additionalProperties": False,
            "properties": {
                "vhost": _STR,
                "user": _STR,
                "userReference": {"type": "object", "properties": {"name": _STR}},
                "permissions": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"configure": _STR, "write": _STR, "read": _STR},
                },
                "rabbitmqClusterReference": _CLUSTER_REF,
            },
            "oneOf": [{"required": ["user"]}, {"required": ["userReference"]}],
        },
    ),
}
