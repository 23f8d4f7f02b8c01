"""DESIGN.md §4 rule 6: a 2xx means committed; an error means not committed, or the client
can find out. Checked where the effect lands: the rows in order_db."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import aiomysql
import httpx
import pymysql
import pytest
from sqlalchemy import event
from sqlalchemy import text as sa_text

from tests.integration.orders.test_orders_api import order_body


def _hold_orders_table_lock(locked: threading.Event, seconds: float) -> None:
    conn = pymysql.connect(host="127.0.0.1", user="root", password="", database="order_db")
    try:
        with conn.cursor() as cur:
            cur.execute("LOCK TABLES orders WRITE")
            locked.set()
            time.sleep(seconds)
            cur.execute("UNLOCK TABLES")
    finally:
        conn.close()


async def _post_while_orders_locked(
    client: httpx.AsyncClient, customer: str, *, seconds: float
) -> tuple[httpx.Response, float]:
    """POST an order while another connection holds the orders table locked for ``seconds``;
    returns the answer and how long the POST took, once the lock is released again."""
    locked = threading.Event()
    holder = threading.Thread(target=_hold_orders_table_lock, args=(locked, seconds))
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, 5.0), "the table lock was not taken"
        started = time.monotonic()
        response = await client.post("/orders", json=order_body(customer_id=customer))
        return response, time.monotonic() - started
    finally:
        await asyncio.to_thread(holder.join)


async def _stored(client, customer_id: str) -> int:
    listing = await client.get("/orders", params={"customer_id": customer_id})
    assert listing.status_code == 200
    return len(listing.json()["items"])


async def test_an_unkeyed_order_answered_as_failed_while_the_table_is_locked_never_commits(
    order_client,
):
    customer = f"cust-lock-{uuid.uuid4().hex[:10]}"
    async with order_client(
        request_timeout_seconds=3.0, write_timeout_seconds=2.5, db_lock_wait_timeout=1
    ) as (client, _):
        response, waited = await _post_while_orders_locked(client, customer, seconds=4.0)
        assert waited >= 0.9, "the insert never waited on the lock: no fault happened"
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("application/problem+json")
        # After the lock is gone (the holder thread has unlocked), nothing appears later.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert await _stored(client, customer) == 0
            await asyncio.sleep(0.2)


async def test_a_batch_whose_commit_acknowledgement_is_lost_is_answered_201_for_every_order(
    order_client, monkeypatch: pytest.MonkeyPatch
):
    customer = f"cust-ack-{uuid.uuid4().hex[:10]}"
    async with order_client(fulfilment_enabled=False) as (client, container):
        engine = container.engine.sync_engine
        dialect = engine.dialect
        real_commit = dialect.do_commit
        inserting: set[int] = set()
        lost: list[int] = []

        def note_order_inserts(conn, cursor, statement, params, context, executemany) -> None:
            if statement.startswith("INSERT INTO orders "):
                inserting.add(id(conn.connection))  # the pool's proxy, as do_commit sees it

        def commit_then_lose_the_answer(dbapi_connection) -> None:
            real_commit(dbapi_connection)
            if id(dbapi_connection) in inserting and not lost:
                lost.append(1)
                raise ConnectionResetError("connection lost while reading the COMMIT answer")

        # The same fault for a batch sent as one multi-statement packet: every statement,
        # COMMIT included, runs on the server, then the connection breaks.
        real_execute = aiomysql.Cursor.execute

        async def execute_then_lose_the_answer(self, query, args=None):
            result = await real_execute(self, query, args)
            if isinstance(query, str) and "INSERT INTO orders " in query and not lost:
                while await self.nextset():
                    pass
                lost.append(1)
                raise ConnectionResetError("connection lost while reading the COMMIT answer")
            return result

        event.listen(engine, "before_cursor_execute", note_order_inserts)
        monkeypatch.setattr(dialect, "do_commit", commit_then_lose_the_answer)
        monkeypatch.setattr(aiomysql.Cursor, "execute", execute_then_lose_the_answer)
        try:
            responses = await asyncio.gather(
                *(client.post("/orders", json=order_body(customer_id=customer)) for _ in range(8))
            )
        finally:
            monkeypatch.undo()
            event.remove(engine, "before_cursor_execute", note_order_inserts)
        assert lost, "no commit answer was lost: no fault happened"
        assert [r.status_code for r in responses] == [201] * 8
        assert await _stored(client, customer) == 8


async def test_a_write_still_undecided_at_its_deadline_answers_503_with_the_id_to_look_up(
    order_client,
):
    customer = f"cust-slow-{uuid.uuid4().hex[:10]}"
    async with order_client(
        request_timeout_seconds=4.0, write_timeout_seconds=1.0, db_lock_wait_timeout=3
    ) as (client, _):
        response, _ = await _post_while_orders_locked(client, customer, seconds=2.0)
        assert response.status_code == 503
        location = response.headers["location"]
        assert location.startswith("/orders/")
        # The insert was waiting on the lock, not refused: once the lock is gone it commits,
        # and the id the client was given finds the order.
        deadline = time.monotonic() + 5.0
        found = await client.get(location)
        while found.status_code == 404 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            found = await client.get(location)
        assert found.status_code == 200, found.text
        assert found.json()["customer_id"] == customer
        assert await _stored(client, customer) == 1


# -- a change of an existing order: the cancellation ---------------------------------------


def _is_transition_packet(query: object) -> bool:
    """The cancellation's write packet (new orders are placed before the fault is set up)."""
    return isinstance(query, str) and "INSERT INTO order_transitions" in query and "COMMIT" in query


async def _stored_change(container, order_id: str) -> tuple[str, int]:
    """The order's status and its OrderCancelled outbox rows, read from order_db itself."""
    async with container.engine.connect() as conn:
        status = (
            await conn.execute(sa_text("SELECT status FROM orders WHERE id = :i"), {"i": order_id})
        ).scalar_one()
        cancelled = (
            await conn.execute(
                sa_text(
                    "SELECT COUNT(*) FROM outbox "
                    "WHERE aggregate_id = :i AND event_type = 'OrderCancelled'"
                ),
                {"i": order_id},
            )
        ).scalar_one()
    return str(status), int(cancelled)


def _failing_transition_execute(
    *, before_send: bool = False, refuse_checks: list[int] | None = None
) -> tuple[Any, list[int]]:
    """aiomysql's execute, with the cancellation's packet losing its connection once: before
    it is sent, or after every statement (COMMIT included) ran; ``refuse_checks`` also makes
    every later look-up of the outbox fail (and counts them)."""
    real_execute = aiomysql.Cursor.execute
    faults: list[int] = []

    async def execute(self, query, args=None):
        if (
            refuse_checks is not None
            and faults
            and isinstance(query, str)
            and "FROM outbox" in query
        ):
            refuse_checks.append(1)
            raise ConnectionResetError("the database cannot be reached")
        if before_send and _is_transition_packet(query) and not faults:
            faults.append(1)
            raise ConnectionResetError("connection lost before the packet was sent")
        result = await real_execute(self, query, args)
        if _is_transition_packet(query) and not faults:
            while await self.nextset():
                pass
            faults.append(1)
            raise ConnectionResetError("connection lost while reading the COMMIT answer")
        return result

    return execute, faults


async def _cancel_under(client, monkeypatch, execute: Any) -> tuple[str, httpx.Response]:
    """Place an order, then cancel it with ``execute`` in place of aiomysql's."""
    placed = await client.post("/orders", json=order_body())
    order_id = placed.json()["id"]
    monkeypatch.setattr(aiomysql.Cursor, "execute", execute)
    try:
        response = await client.post(f"/orders/{order_id}/cancel")
    finally:
        monkeypatch.undo()
    return order_id, response


async def test_a_cancellation_whose_commit_acknowledgement_is_lost_is_answered_200(
    order_client, monkeypatch: pytest.MonkeyPatch
):
    async with order_client(fulfilment_enabled=False) as (client, container):
        execute, lost = _failing_transition_execute()
        order_id, response = await _cancel_under(client, monkeypatch, execute)
        assert lost, "no commit answer was lost: no fault happened"
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        assert await _stored_change(container, order_id) == ("cancelled", 1)


async def test_a_cancellation_whose_packet_never_ran_is_answered_503_and_changes_nothing(
    order_client, monkeypatch: pytest.MonkeyPatch
):
    async with order_client(fulfilment_enabled=False) as (client, container):
        execute, dropped = _failing_transition_execute(before_send=True)
        order_id, response = await _cancel_under(client, monkeypatch, execute)
        assert dropped, "the packet was sent: no fault happened"
        assert response.status_code == 503, response.text
        assert "location" not in response.headers  # not committed, known: just retry
        assert await _stored_change(container, order_id) == ("created", 0)
        # The retry the answer asks for succeeds.
        assert (await client.post(f"/orders/{order_id}/cancel")).status_code == 200
        assert await _stored_change(container, order_id) == ("cancelled", 1)


async def test_a_cancellation_whose_outcome_cannot_be_checked_answers_503_with_the_order(
    order_client, monkeypatch: pytest.MonkeyPatch
):
    async with order_client(fulfilment_enabled=False) as (client, container):
        checks: list[int] = []
        execute, lost = _failing_transition_execute(refuse_checks=checks)
        order_id, response = await _cancel_under(client, monkeypatch, execute)
        assert lost and checks, "the commit answer was not lost or never checked: no fault"
        assert response.status_code == 503, response.text
        assert response.headers["location"] == f"/orders/{order_id}"
        # What the answer points at tells the truth: the cancellation did commit.
        assert await _stored_change(container, order_id) == ("cancelled", 1)
        assert (await client.get(response.headers["location"])).json()["status"] == "cancelled"
