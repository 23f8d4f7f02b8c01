"""Which notifications an event asks for, and when."""

from __future__ import annotations

from datetime import timedelta

import pytest

from common.events import ContractError
from notification_worker.planning import Planner
from notification_worker.templates import render
from tests.unit.notifications.conftest import NOW, delivery, order_body


def plan(body: bytes, reminder_minutes: float = 0.0, max_ahead: float = 3600.0):
    d = delivery(body)
    planner = Planner(reminder_minutes=reminder_minutes, max_ahead_seconds=max_ahead)
    return planner.plan(d.envelope, d.event, NOW)


def test_an_order_created_asks_for_one_notification_now_by_default():
    [only] = plan(order_body())
    assert (only.kind, only.due, only.primary) == ("created", None, True)
    assert only.audit_field("log") == "log"


def test_a_scheduled_time_in_the_data_delays_the_notification_to_it():
    due = NOW + timedelta(minutes=5)
    [only] = plan(order_body(scheduled_time=due.isoformat()))
    assert only.due == due


def test_a_configured_reminder_adds_a_second_notification_counted_apart():
    created, reminder = plan(order_body(), reminder_minutes=10)
    assert reminder.kind == "reminder"
    assert reminder.due == NOW + timedelta(minutes=10)
    assert reminder.audit_field("log") == "log:reminder"
    assert created.key != reminder.key


@pytest.mark.parametrize(
    "value",
    ["not a time", "2026-01-01T12:00:00", 12],
)
def test_a_scheduled_time_that_is_not_an_aware_timestamp_is_a_contract_error(value):
    with pytest.raises(ContractError):
        plan(order_body(scheduled_time=value))


def test_a_scheduled_time_further_ahead_than_allowed_is_a_contract_error():
    with pytest.raises(ContractError, match="further ahead"):
        plan(order_body(scheduled_time=(NOW + timedelta(hours=2)).isoformat()))


def test_templates_differ_per_channel_and_keep_money_exact():
    [n] = plan(order_body())
    mail = render(n.event_type, n.kind, "smtp", n.fields)
    line = render(n.event_type, n.kind, "log", n.fields)
    assert mail.subject != line.subject
    assert "19.98 USD" in mail.text and "19.98 USD" in line.text


def test_the_notification_queue_is_bound_to_exactly_the_events_the_worker_notifies_on():
    from common.events import routing_key_for
    from common.messaging.topology import NOTIFIED_ROUTING_KEYS, default_topology
    from notification_worker.planning import PRIMARY_KINDS
    from notification_worker.templates import has_template

    notified = {routing_key_for(t) for t, kind in PRIMARY_KINDS.items() if has_template(t, kind)}
    assert set(NOTIFIED_ROUTING_KEYS) == notified
    queue = default_topology().queue("notifications.orders")
    assert set(queue.bindings) == notified
