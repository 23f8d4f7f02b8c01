"""The cache breaker: a Redis error bypasses the cache for the cooldown, then it is tried again."""

from __future__ import annotations

from common.cache_breaker import CacheBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_after_an_error_the_cache_is_bypassed_until_the_cooldown_has_passed():
    clock = Clock()
    breaker = CacheBreaker(2.0, clock=clock)
    assert breaker.available()
    breaker.failed("get", ConnectionError("down"))
    assert not breaker.available()
    clock.now += 1.9
    assert not breaker.available()
    clock.now += 0.1
    assert breaker.available()


def test_an_error_while_bypassed_extends_the_bypass_from_that_error():
    clock = Clock()
    breaker = CacheBreaker(2.0, clock=clock)
    breaker.failed("get", ConnectionError("down"))
    clock.now += 1.5
    breaker.failed("set", ConnectionError("still down"))
    clock.now += 1.5
    assert not breaker.available()
    clock.now += 0.5
    assert breaker.available()
