"""Serve a Litestar app with uvicorn on the test's own event loop, on a free port.

Litestar's test clients run the app on another thread's loop; tests that also touch the app's
pools (engine, Redis) from the test loop need the app on the same loop, and a real socket is
closer to production anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn

__all__ = ["serve_app"]


@asynccontextmanager
async def serve_app(app: Any, *, timeout: float = 15.0) -> AsyncIterator[httpx.AsyncClient]:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped before it started")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("server did not start")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout)
