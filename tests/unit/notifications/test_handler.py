"""The handler's decisions, with an in-memory sent store and fake channels."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from common.events import ContractError
from common.messaging.outcomes import Ack, Defer, Park, Retry, Unavailable
from common.observability import Metrics
from notification_worker.handlers import DONE_HEADER, NotificationHandler
from notification_worker.metrics import NotificationMetrics
from notification_worker.notifiers import PermanentSendError, TransientSendError
from notification_worker.planning import Planner
from tests.unit.notifications.conftest import NOW, delivery, order_body
from tests.unit.notifications.fakes import FakeChannel, FakeSentStore

TIERS = (1.0, 10.0, 60.0)


def make(
    *channels: FakeChannel, reminder_minutes: float = 0.0, now=NOW
) -> tuple[NotificationHandler, FakeSentStore, NotificationMetrics]:
    store = FakeSentStore()
    metrics = NotificationMetrics(Metrics("nw_test"))
    handler = NotificationHandler(
        Planner(reminder_minutes=reminder_minutes, max_ahead_seconds=86_400),
        list(channels) or [FakeChannel("log")],
        store,
        metrics,
        tiers=TIERS,
        claim_seconds=5,
        channel_concurrency=4,
        clock=lambda: now,
    )
    return handler, store, metrics


def count(metric, **labels) -> float:
    return metric.labels(**labels)._value.get()


async def test_an_event_is_sent_once_through_every_channel_and_acked():
    log, hook = FakeChannel("log"), FakeChannel("webhook")
    handler, store, metrics = make(log, hook)
    body = order_body()
    assert await handler.handle(delivery(body)) == Ack("sent")
    assert len(log.sent) == 1 and len(hook.sent) == 1
    order_id = log.sent[0][0].order_id
    assert store.audits == {order_id: {"log": 1, "webhook": 1}}
    assert "19.98 USD" in log.sent[0][1].text
    assert count(metrics.sent, channel="webhook") == 1


async def test_a_redelivered_event_skips_the_channels_already_sent():
    log = FakeChannel("log")
    handler, _store, metrics = make(log)
    body = order_body()
    await handler.handle(delivery(body))
    assert await handler.handle(delivery(body)) == Ack("duplicate")
    assert len(log.sent) == 1
    assert count(metrics.skipped_duplicate, channel="log") == 1


async def test_a_transient_failure_retries_and_carries_the_channels_that_succeeded():
    log, hook = FakeChannel("log"), FakeChannel("webhook", failures=[TransientSendError("503")])
    handler, store, metrics = make(log, hook)
    body = order_body()
    outcome = await handler.handle(delivery(body))
    assert isinstance(outcome, Retry)
    assert "webhook/created: 503" in outcome.error
    assert outcome.headers == {DONE_HEADER: "created/log"}
    assert store.claims == {}  # the failed claim was released for the retry
    # The retry sends only the webhook and does not ask the store about the log send.
    retried = await handler.handle(delivery(body, headers=outcome.headers, attempt=2))
    assert retried == Ack("sent")
    assert len(log.sent) == 1 and len(hook.sent) == 1
    assert count(metrics.skipped_duplicate, channel="log") == 0
    assert count(metrics.failed, channel="webhook", kind="transient") == 1


async def test_a_permanent_failure_parks_with_the_error():
    hook = FakeChannel("webhook", failures=[PermanentSendError("webhook HTTP 400: no")])
    handler, _, metrics = make(hook)
    outcome = await handler.handle(delivery(order_body()))
    assert outcome == Park(
        "permanent_failure", "webhook/created: webhook HTTP 400: no", {DONE_HEADER: ""}
    )
    assert count(metrics.failed, channel="webhook", kind="permanent") == 1


async def test_a_send_slower_than_its_channel_timeout_is_a_transient_failure():
    slow = FakeChannel("webhook", timeout=0.05, delay=1.0)
    handler, store, _ = make(slow)
    outcome = await handler.handle(delivery(order_body()))
    assert isinstance(outcome, Retry)
    assert store.sent == set()


async def test_a_send_claimed_by_another_delivery_is_deferred_not_sent():
    log = FakeChannel("log", delay=0.1)
    handler, _store, _ = make(log)
    body = order_body()
    first, second = await asyncio.gather(
        handler.handle(delivery(body)), handler.handle(delivery(body))
    )
    assert sorted([type(first).__name__, type(second).__name__]) == ["Ack", "Defer"]
    deferred = first if isinstance(first, Defer) else second
    assert isinstance(deferred, Defer) and deferred.delay == TIERS[0]
    assert len(log.sent) == 1


async def test_a_record_that_fails_briefly_is_retried_in_place():
    log = FakeChannel("log")
    handler, store, _ = make(log)
    store.fail_record = 2
    assert await handler.handle(delivery(order_body())) == Ack("sent")
    assert len(log.sent) == 1 and len(store.sent) == 1


async def test_a_scheduled_notification_is_deferred_to_the_largest_tier_before_it_is_due():
    log = FakeChannel("log")
    handler, store, _ = make(log)
    due = NOW + timedelta(seconds=75)
    outcome = await handler.handle(delivery(order_body(scheduled_time=due.isoformat())))
    assert outcome == Defer(60.0, {DONE_HEADER: "", "x-attempt": 1})
    assert log.sent == []
    assert list(store.scheduled.values()) == [due.timestamp()]


async def test_a_scheduled_notification_is_sent_once_due_and_unscheduled():
    log = FakeChannel("log")
    due = NOW + timedelta(seconds=0.3)
    handler, store, _ = make(log)
    body = order_body(scheduled_time=due.isoformat())
    event_key = f"{delivery(body).envelope.event_id}:created"
    store.scheduled[event_key] = due.timestamp()
    assert await handler.handle(delivery(body)) == Ack("sent")
    assert store.scheduled == {}


async def test_a_reminder_is_held_after_the_first_send_with_fresh_attempts():
    log = FakeChannel("log")
    handler, store, _ = make(log, reminder_minutes=30)
    body = order_body()
    outcome = await handler.handle(delivery(body, attempt=3, headers={"x-attempt": 3}))
    assert outcome == Defer(60.0, {DONE_HEADER: "created/log", "x-attempt": 1})
    assert len(log.sent) == 1
    later, store2, _ = make(log, reminder_minutes=30, now=NOW + timedelta(minutes=30))
    store2.sent = store.sent
    assert await later.handle(delivery(body, headers=outcome.headers)) == Ack("sent")
    assert [n.kind for n, _ in log.sent] == ["created", "reminder"]
    assert "Reminder" in log.sent[1][1].subject


async def test_an_invalid_scheduled_time_is_a_contract_error():
    handler, _, _ = make()
    with pytest.raises(ContractError):
        await handler.handle(delivery(order_body(scheduled_time="tomorrow-ish")))


async def test_a_send_whose_record_redis_refuses_is_not_sent_again_after_the_outage():
    hook = FakeChannel("webhook")
    handler, store, _ = make(hook)
    body = order_body()
    store.fail_record = 1_000  # Redis goes away right after the channel accepted the send
    outcome = await handler.handle(delivery(body))
    assert len(hook.sent) == 1
    # The outage outlasts the lease and every attempt the message could spend.
    store.down = True
    store.expire_leases()
    for _ in range(10):
        assert not isinstance(outcome, Ack | Park), outcome
        outcome = await handler.handle(delivery(body, headers=_carried(outcome)))
    store.down, store.fail_record = False, 0
    outcome = await handler.handle(delivery(body, headers=_carried(outcome)))
    assert outcome == Ack("sent")
    assert len(hook.sent) == 1
    order_id = hook.sent[0][0].order_id
    assert store.audits == {order_id: {"webhook": 1}}


async def test_a_redis_outage_defers_without_spending_an_attempt():
    log = FakeChannel("log")
    handler, store, _ = make(log)
    store.down = True
    outcome = await handler.handle(delivery(order_body(), headers={"x-attempt": 2}, attempt=2))
    assert isinstance(outcome, Unavailable)  # the runner defers it and keeps the attempt count
    assert "x-attempt" not in outcome.headers
    assert log.sent == []


def _carried(outcome) -> dict:
    """The headers the consumer runner gives the next copy of a retried or deferred message."""
    assert isinstance(outcome, Retry | Defer | Unavailable), outcome
    return dict(outcome.headers)


async def test_a_batch_asks_the_store_once_for_its_claims_and_once_for_its_records():
    log, hook = FakeChannel("log"), FakeChannel("webhook")
    handler, store, _ = make(log, hook)
    bodies = [order_body() for _ in range(10)]
    outcomes = await handler.handle_batch([delivery(b) for b in bodies])
    assert outcomes == [Ack("sent")] * 10
    assert (store.claim_calls, store.record_calls) == (1, 1)
    assert len(log.sent) == 10 and len(hook.sent) == 10
    again = await handler.handle_batch([delivery(b) for b in bodies])
    assert again == [Ack("duplicate")] * 10
    assert (store.claim_calls, store.record_calls) == (2, 1)


async def test_one_failing_message_of_a_batch_does_not_hold_back_its_neighbours():
    hook = FakeChannel("webhook", failures=[TransientSendError("503")])
    handler, store, _ = make(hook)
    outcomes = await handler.handle_batch([delivery(order_body()) for _ in range(3)])
    assert sorted(type(o).__name__ for o in outcomes) == ["Ack", "Ack", "Retry"]
    assert len(store.sent) == 2
