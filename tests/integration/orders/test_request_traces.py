"""With tracing on, the order service's requests are spans (the cached-read fast path too),
its database transactions are spans in the request's trace, and the client is told the trace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from common import tracing
from tests.integration.orders.test_orders_api import order_body


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)


def trace_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


async def test_a_post_names_its_trace_and_its_commit_is_in_it(order_client, spans):
    async with order_client() as (client, _):
        response = await client.post("/orders", json=order_body())
    assert response.status_code == 201
    trace_id = response.headers["traceresponse"].split("-")[1]
    finished = spans.get_finished_spans()
    (server,) = [s for s in finished if s.kind == SpanKind.SERVER]
    assert server.name == "POST /orders" and trace_of(server) == trace_id
    assert (server.attributes or {})["order.id"] == response.json()["id"]
    commits = [s for s in finished if s.name == "group commit order_db"]
    assert [trace_of(s) for s in commits] == [trace_id]
    assert commits[0].parent is not None and commits[0].parent.span_id == server.context.span_id


async def test_a_cached_read_is_traced_like_a_read_from_the_database(order_client, spans):
    async with order_client() as (client, container):
        created = (await client.post("/orders", json=order_body())).json()
        await container.redis.delete(f"order:v1:{created['id']}")
        spans.clear()
        miss = await client.get(f"/orders/{created['id']}")
        hit = await client.get(f"/orders/{created['id']}")
    assert miss.status_code == hit.status_code == 200
    finished = spans.get_finished_spans()
    servers = [s for s in finished if s.kind == SpanKind.SERVER]
    assert [s.name for s in servers] == ["GET /orders/{order_id}"] * 2
    assert [(s.attributes or {}).get("http.status_code", 200) for s in servers] == [200, 200]
    # The miss read MySQL in one transaction, a child of its request; the hit did not (the
    # relay and the saga run their own transactions meanwhile, in other traces).
    reads = {trace_of(s) for s in servers}
    transactions = [
        s for s in finished if s.name.startswith("transaction ") and trace_of(s) in reads
    ]
    assert len(transactions) == 1
    assert transactions[0].parent is not None
    assert transactions[0].parent.span_id == servers[0].context.span_id
    # Each read asked Redis once, a child of its request (the pipelined GETs trace themselves).
    gets = [s for s in finished if s.name == "GET" and trace_of(s) in reads]
    assert sorted(s.parent.span_id for s in gets if s.parent) == sorted(
        s.context.span_id for s in servers
    )
    assert all((s.attributes or {})["db.system.name"] == "redis" for s in gets)
    assert (transactions[0].attributes or {})["db.transaction.outcome"] in ("commit", "rollback")
