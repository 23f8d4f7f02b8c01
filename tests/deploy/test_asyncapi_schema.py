"""docs/asyncapi.json is a valid AsyncAPI 3.0 document by the official JSON Schema (npm package
@asyncapi/specs, fetched by deploy/install-tools.sh into the virtualenv)."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from common.asyncapi import ASYNCAPI_VERSION, build_asyncapi
from tests.deploy.tools import INSTALL_HINT

ROOT = Path(__file__).resolve().parents[2]
SPECS = Path(sys.prefix) / "share" / "asyncapi-specs"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    path = SPECS / "schemas" / f"{ASYNCAPI_VERSION}.json"
    if not path.is_file():
        pytest.fail(
            f"the AsyncAPI {ASYNCAPI_VERSION} JSON Schema is missing at {path}; {INSTALL_HINT}",
            pytrace=False,
        )
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _errors(validator: jsonschema.protocols.Validator, document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
        for e in validator.iter_errors(document)
    ]


def test_the_committed_asyncapi_document_is_valid_asyncapi_3(
    validator: jsonschema.protocols.Validator,
) -> None:
    document = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    assert document["asyncapi"] == ASYNCAPI_VERSION
    assert _errors(validator, document) == []


def test_the_official_schema_rejects_a_broken_channel_binding_and_operation(
    validator: jsonschema.protocols.Validator,
) -> None:
    """Guards the test above: the schema really looks into bindings and operations."""
    document = build_asyncapi()
    bad_binding = copy.deepcopy(document)
    bad_binding["channels"]["order.created"]["bindings"]["amqp"]["is"] = "exchange"
    bad_action = copy.deepcopy(document)
    bad_action["operations"]["publish.order.created"]["action"] = "publish"
    assert _errors(validator, document) == []
    assert _errors(validator, bad_binding)
    assert _errors(validator, bad_action)
