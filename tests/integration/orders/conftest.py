"""Runs the real order service in-process against MariaDB, Redis and RabbitMQ."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from common.messaging.topology import TopologySettings
from common.testing_http import serve_app
from order_service.app import create_app
from order_service.container import Container
from order_service.settings import OrderSettings

AppFactory = Callable[..., Any]


@pytest.fixture
def order_settings(cleanup_topology: TopologySettings) -> OrderSettings:
    return dataclasses.replace(
        OrderSettings.from_env(), topology=cleanup_topology, relay_poll_interval=0.2
    )


@pytest.fixture
def order_client(order_settings: OrderSettings) -> Callable[..., Any]:
    """``async with order_client(**overrides) as (client, container)``."""

    @asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Container]]:
        settings = dataclasses.replace(order_settings, **overrides)
        app = create_app(settings, configure_logs=False)
        async with serve_app(app) as client:
            yield client, app.state.container

    return run


def metric_value(container: Container, name: str, labels: dict[str, str] | None = None) -> float:
    value = container.registry_metrics.registry.get_sample_value(name, labels or {})
    return value or 0.0
