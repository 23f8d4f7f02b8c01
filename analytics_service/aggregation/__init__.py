"""Pure analytics rules: what a fact is, which aggregates it feeds, how buckets and money look.

No I/O here, so the consumer, the rebuild and the API agree on one definition of every total;
and no wire contract either (analytics_service/event_facts.py turns an event into a fact).

Order lifecycle (issue 6). A fact is one order's latest known state: the event with the highest
``order_version`` seen wins, whatever order the events arrive in, and an older or equal version
changes nothing. Every aggregate is a sum of per-order contributions that depend only on that
state, so applying a change adds ``contribution(after) - contribution(before)``:

- booked (``currency``/``hourly``/``product``/``customer``: the existing ``total_orders`` and
  ``total_revenue``): orders in ``created``, ``paid`` or ``confirmed``. A scheduled order is not
  booked until its OrderCreated; a cancelled, rejected or payment-failed order is taken back out.
  Hourly buckets are by the order's ``created_at``.
- recognised (``recognised``): orders in ``confirmed``, bucketed by the hour of confirmation.
  Confirmed is final in the lifecycle; if a later version ever left it, the recognised revenue
  would be taken back the same way.
- ``status``: orders and revenue per (currency, state), for ``orders_by_status``.

A cancellation applied before its creation leaves the order cancelled and never booked, so no
total ever goes negative and the final figures do not depend on delivery order.

Modules: ``facts`` (an order's state and the version fold), ``totals`` (the write model: what
the facts add up to), ``reading`` (the read side: summaries, money text, revenue buckets).
"""

from analytics_service.aggregation.facts import (
    AMOUNT_SCALE,
    BOOKED_STATES,
    MAX_AMOUNT,
    MAX_ID_LENGTH,
    MAX_QUANTITY,
    ORDER_STATES,
    RECOGNISED_STATES,
    REVERSED_STATES,
    STATE_OF_EVENT,
    Change,
    InvalidFactError,
    OrderFact,
    fold,
    state_of,
    supersedes,
)
from analytics_service.aggregation.reading import (
    GRANULARITIES,
    BucketPlan,
    CurrencySummary,
    Granularity,
    InvalidRangeError,
    average,
    money,
    plan_buckets,
    summarize,
)
from analytics_service.aggregation.totals import (
    AggregateKind,
    Aggregates,
    Difference,
    Key,
    Totals,
    aggregate,
    bucket_floor,
    delta,
    diff,
)

__all__ = [
    "AMOUNT_SCALE",
    "BOOKED_STATES",
    "GRANULARITIES",
    "MAX_AMOUNT",
    "MAX_ID_LENGTH",
    "MAX_QUANTITY",
    "ORDER_STATES",
    "RECOGNISED_STATES",
    "REVERSED_STATES",
    "STATE_OF_EVENT",
    "AggregateKind",
    "Aggregates",
    "BucketPlan",
    "Change",
    "CurrencySummary",
    "Difference",
    "Granularity",
    "InvalidFactError",
    "InvalidRangeError",
    "Key",
    "OrderFact",
    "Totals",
    "aggregate",
    "average",
    "bucket_floor",
    "delta",
    "diff",
    "fold",
    "money",
    "plan_buckets",
    "state_of",
    "summarize",
    "supersedes",
]
