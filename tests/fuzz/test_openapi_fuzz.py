"""schemathesis against the live order and analytics APIs: generated valid and invalid requests,
zero 5xx, every response (status, content type, headers, body) as the OpenAPI schema says.

A bounded run is part of ``make test``; ``-m faults`` runs many more examples.
"""

from __future__ import annotations

import pytest

from tests.e2e.system import RunningSystem
from tests.fuzz.schemathesis_run import run_schemathesis

SHORT_EXAMPLES = 150
LONG_EXAMPLES = 1000


async def _fuzz(tmp_path, service: str, max_examples: int) -> None:
    async with RunningSystem(services=["order", "analytics-api"]) as system:
        base = system.order_url if service == "order" else system.analytics_url
        result = await run_schemathesis(
            f"{base}/schema/openapi.json", max_examples=max_examples, report_dir=tmp_path
        )
    tail = result.output[-6000:]
    print(f"[fuzz:{service}] exit={result.exit_code} requests~{result.requests}\n{tail[-1500:]}")
    assert result.ok, tail


@pytest.mark.e2e
@pytest.mark.timeout(150)
async def test_generated_requests_to_the_order_api_never_get_a_5xx_and_match_the_schema(
    tmp_path,
) -> None:
    await _fuzz(tmp_path, "order", SHORT_EXAMPLES)


@pytest.mark.e2e
@pytest.mark.timeout(150)
async def test_generated_requests_to_the_analytics_api_never_get_a_5xx_and_match_the_schema(
    tmp_path,
) -> None:
    await _fuzz(tmp_path, "analytics", SHORT_EXAMPLES)


@pytest.mark.faults
@pytest.mark.timeout(900)
@pytest.mark.parametrize("service", ["order", "analytics"])
async def test_thousands_of_generated_requests_never_get_a_5xx_and_match_the_schema(
    tmp_path, service: str
) -> None:
    await _fuzz(tmp_path, service, LONG_EXAMPLES)
