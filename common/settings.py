"""Typed environment reading: every setting is read once at start-up and fails loudly by name."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import TypeVar

__all__ = [
    "DEPLOYMENT_ENV",
    "LOCAL_RABBITMQ_URL",
    "LOCAL_REDIS_URL",
    "LOG_LEVELS",
    "Env",
    "SettingsError",
]

# ORDERFLOW_ENV=local (set by the Makefile, the Procfile and the tests) lets the settings that
# carry credentials fall back to the local development values; anywhere else they must be set.
DEPLOYMENT_ENV = "ORDERFLOW_ENV"
# The local defaults of the settings every process reads.
LOCAL_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
LOG_LEVELS = ("debug", "info", "warning", "error")

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


class Env:
    """Reads typed values from an environment mapping (os.environ by default)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def _raw(self, name: str, default: str | None) -> str:
        value = self._environ.get(name)
        if value is None or value == "":
            if default is None:
                raise SettingsError(f"{name} is required but not set")
            return default
        return value

    def _convert(self, name: str, raw: str, conv: Callable[[str], T], kind: str) -> T:
        try:
            return conv(raw)
        except (ValueError, InvalidOperation) as exc:
            raise SettingsError(f"{name}={raw!r} is not a valid {kind}") from exc

    def text(self, name: str, default: str | None = None) -> str:
        return self._raw(name, default)

    @property
    def local(self) -> bool:
        """True only when the process is told it runs for local development."""
        return (self._environ.get(DEPLOYMENT_ENV) or "").strip().lower() == "local"

    def credential(self, name: str, local_default: str) -> str:
        """A setting that carries a credential (a URL with a password, a broker user): the local
        default applies only with ORDERFLOW_ENV=local, so a deployment that forgot it fails at
        start, naming it, instead of trying guest or a published local password."""
        value = self._environ.get(name)
        if value:
            return value
        if self.local:
            return local_default
        raise SettingsError(
            f"{name} is required: it carries a credential, and its local default applies only "
            f"with {DEPLOYMENT_ENV}=local"
        )

    def optional_text(self, name: str) -> str | None:
        value = self._environ.get(name)
        return value if value else None

    def integer(
        self, name: str, default: int | None = None, *, min_value: int | None = None
    ) -> int:
        raw = self._raw(name, None if default is None else _to_text(default))
        value = self._convert(name, raw, int, "integer")
        if min_value is not None and value < min_value:
            raise SettingsError(f"{name}={value} must be >= {min_value}")
        return value

    def number(
        self, name: str, default: float | None = None, *, min_value: float | None = None
    ) -> float:
        raw = self._raw(name, None if default is None else _to_text(default))
        value = self._convert(name, raw, float, "number")
        if min_value is not None and value < min_value:
            raise SettingsError(f"{name}={value} must be >= {min_value}")
        return value

    def decimal(self, name: str, default: str | None = None) -> Decimal:
        return self._convert(name, self._raw(name, default), Decimal, "decimal")

    def flag(self, name: str, default: bool | None = None) -> bool:
        raw = self._raw(name, None if default is None else ("true" if default else "false"))
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{name}={raw!r} is not a boolean (true/false)")

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> str:
        raw = self._raw(name, default).strip().lower()
        if raw not in choices:
            raise SettingsError(f"{name}={raw!r} must be one of {', '.join(choices)}")
        return raw

    def number_list(self, name: str, default: str) -> tuple[float, ...]:
        raw = self._raw(name, default)
        try:
            values = tuple(float(part) for part in raw.split(",") if part.strip())
        except ValueError as exc:
            raise SettingsError(f"{name}={raw!r} is not a comma-separated list of numbers") from exc
        if not values or any(v <= 0 for v in values):
            raise SettingsError(f"{name}={raw!r} needs one or more positive numbers")
        return values

    def broker_urls(self, name: str, default: str) -> str:
        """One AMQP URL or a comma-separated list of a cluster's nodes (common/messaging/
        connection.py parses it), checked here so a typo fails at start-up by name. It carries
        a credential: the local default applies only with ORDERFLOW_ENV=local."""
        from common.messaging.connection import parse_broker_urls  # aio-pika only when asked

        raw = self.credential(name, default).strip()
        try:
            parse_broker_urls(raw)
        except ValueError as exc:
            raise SettingsError(f"{name}: {exc}") from exc
        return raw

    def text_list(self, name: str, default: str) -> tuple[str, ...]:
        raw = self._raw(name, default)
        return tuple(part.strip() for part in raw.split(",") if part.strip())


def _to_text(value: object) -> str:
    return str(value)
