"""What a handler decides for one delivery; the consumer runner carries it out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Ack",
    "Defer",
    "DependencyUnavailableError",
    "Outcome",
    "Park",
    "Retry",
    "Unavailable",
]


@dataclass(frozen=True)
class Ack:
    """The effect is committed (or there is nothing to do); ``label`` is the metric outcome."""

    label: str = "applied"


@dataclass(frozen=True)
class Retry:
    """A transient failure: try again after the next retry tier's delay.

    ``headers`` are merged into the retried copy (e.g. progress a handler wants to carry).
    """

    reason: str
    error: str = ""
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Park:
    """The message can never succeed: move it to the parking lot with the reason.

    ``headers`` are merged into the parked copy (progress a replay must not lose).
    """

    reason: str
    error: str = ""
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Defer:
    """Not due yet: hold it in the tier of ``delay`` seconds without counting an attempt."""

    delay: float
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Unavailable:
    """A dependency (database, Redis, broker) is down, not the message at fault: wait in a delay
    tier, growing with each outage hop, without spending an attempt (DESIGN.md §4 rule 7)."""

    reason: str
    error: str = ""
    headers: dict[str, Any] = field(default_factory=dict)


class DependencyUnavailableError(Exception):
    """Raised (or subclassed) by an adapter whose dependency is down: the runner turns it into
    ``Unavailable`` instead of a ``Retry``, so an outage never spends attempts or parks work."""


Outcome = Ack | Retry | Park | Defer | Unavailable
