"""Which publish failures are the message's own (spend an attempt) and which are the broker away
(spend none, DESIGN §4.7): the relay's classification of confirm results."""

from __future__ import annotations

from aiormq.exceptions import DeliveryError
from pamqp.commands import Basic

from common.messaging.publisher import PublishResult
from order_service.adapters.outbox_store import broker_outage as _outage

OK = PublishResult("m-ok", ok=True)
RETURNED = PublishResult("m-ret", ok=False, returned=True, error="unroutable")
NACKED = PublishResult("m-nack", ok=False, error=repr(DeliveryError(None, Basic.Nack(1))))
TIMED_OUT = PublishResult("m-late", ok=False, error="TimeoutError()")
CLOSED = PublishResult("m-closed", ok=False, error="ChannelInvalidStateError('closed')")


def test_a_returned_or_nacked_message_among_confirmed_ones_is_the_messages_own_failure() -> None:
    assert _outage([OK, RETURNED, OK]) is None
    assert _outage([OK, NACKED]) is None
    assert _outage([RETURNED]) is None
    assert _outage([NACKED]) is None


def test_a_timeout_or_a_closed_channel_is_the_broker_away_and_spends_no_attempt() -> None:
    assert _outage([OK, TIMED_OUT]) == "TimeoutError()"
    assert _outage([RETURNED, CLOSED]) is not None


def test_a_broker_that_nacks_a_whole_batch_is_an_outage_not_many_poison_rows() -> None:
    assert _outage([NACKED, NACKED, NACKED]) is not None
    assert _outage([OK, OK]) is None
