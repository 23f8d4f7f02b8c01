"""Settings declared once: each field names its variable, default, bounds and meaning in one
line, and the same declaration reads it (common.settings.Env, loud by name) and documents it
(docs/operations.md, `python -m common.settings_doc`).

    @dataclass(frozen=True)
    class WorkerSettings:
        http_port: int = setting("WORKER_HTTP_PORT", 8082, "metrics/health port", min_value=0)

``read_settings(WorkerSettings, env)`` reads every declared field by its annotation; a field
whose type declares settings itself is read the same way; any other field is passed in.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from common.settings import Env, SettingsError

__all__ = ["Setting", "declared", "read_settings", "setting"]

T = TypeVar("T")
_KEY = "setting"


@dataclass(frozen=True)
class Setting:
    env: str
    doc: str
    min_value: float | None = None
    choices: tuple[str, ...] | None = None
    # Carries a credential: its default applies only with ORDERFLOW_ENV=local (Env.credential).
    credential: bool = False
    # One AMQP URL or a cluster's list, checked at start (Env.broker_urls); a credential too.
    broker: bool = False
    # Never shown: not in repr, not in the docs' default column.
    secret: bool = False
    # Which process reads it, when not every process of the settings class does.
    read_by: str = ""
    # Read by every process (RABBITMQ_URL, REDIS_URL, LOG_LEVEL): documented once, by hand.
    shared: bool = False


def setting(
    env: str,
    default: Any,
    doc: str,
    *,
    min_value: float | None = None,
    choices: tuple[str, ...] | None = None,
    credential: bool = False,
    broker: bool = False,
    secret: bool = False,
    read_by: str = "",
    shared: bool = False,
) -> Any:
    """A dataclass field read from ``env``; typed ``Any`` so the annotation stays the type."""
    spec = Setting(env, doc, min_value, choices, credential, broker, secret, read_by, shared)
    return dataclasses.field(default=default, metadata={_KEY: spec}, repr=not secret)


def declared(cls: type[Any]) -> Iterator[tuple[Setting, Any, Any]]:
    """(declaration, type, default) of every setting of ``cls``, nested ones included."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_KEY)
        if spec is not None:
            yield spec, hints[f.name], f.default
        elif _declares(hints[f.name]):
            yield from declared(hints[f.name])


def read_settings(cls: type[T], env: Env, **given: Any) -> T:
    """``cls`` from the environment; ``given`` supplies the fields it does not declare."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in given:
            continue
        spec = f.metadata.get(_KEY)
        if spec is not None:
            values[f.name] = _read(env, spec, hints[f.name], f.default)
        elif _declares(hints[f.name]):
            values[f.name] = read_settings(hints[f.name], env)
    return cls(**values, **given)


def _declares(hint: Any) -> bool:
    return dataclasses.is_dataclass(hint) and any(
        _KEY in f.metadata for f in dataclasses.fields(hint)
    )


def _read(env: Env, spec: Setting, hint: Any, default: Any) -> Any:
    name, floor = spec.env, spec.min_value
    if spec.broker:
        return env.broker_urls(name, default)
    if spec.credential:
        return env.credential(name, default)
    if spec.choices is not None:
        return env.choice(name, spec.choices, default)
    if hint is bool:
        return env.flag(name, default)
    if hint is int:
        return env.integer(name, default, min_value=None if floor is None else int(floor))
    if hint is float:
        return env.number(name, default, min_value=floor)
    if hint is str:
        return env.text(name, default)
    if hint is Decimal:
        return env.decimal(name, str(default))
    if hint == str | None:
        return env.optional_text(name)
    if hint == int | None:
        if env.optional_text(name) is None:
            return None
        return env.integer(name, min_value=None if floor is None else int(floor))
    if hint == tuple[str, ...]:
        return env.text_list(name, ",".join(default))
    if hint == tuple[float, ...]:
        return env.number_list(name, ",".join(f"{v:g}" for v in default))
    raise SettingsError(f"{name}: no reader for a setting of type {hint!r}")
