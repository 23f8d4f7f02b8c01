"""Runs an ASGI app with uvicorn so that SIGTERM/SIGINT end in a graceful exit with status 0."""

from __future__ import annotations

import asyncio
from types import FrameType
from typing import Any

import uvicorn

__all__ = ["GracefulServer", "serve_http"]


class GracefulServer(uvicorn.Server):
    """uvicorn re-raises the captured signal after its graceful shutdown, so the process dies
    with -15; we finished our work (DESIGN.md §4), so we exit 0 instead.

    When the app's host drains first (common.hosting, ``drain_first``), the first SIGTERM or
    SIGINT starts its stop while uvicorn goes on serving /metrics and /health, and uvicorn
    shuts down once the stop is done; a second signal stops serving at once (the lifespan's
    shutdown still waits for the drain).
    """

    # Held so the drain task is not collected while it runs (the loop keeps only weak refs).
    _draining: asyncio.Task[None] | None = None
    _drain_requested = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        host = _host_of(getattr(self.config, "loaded_app", None))
        if host is not None and host.drain_first and not self._drain_requested and self.started:
            # Marked here, not in the callback: a second signal before it runs stops serving.
            self._drain_requested = True
            loop = asyncio.get_event_loop()
            loop.call_soon_threadsafe(self._drain_then_exit, host, sig, frame)
            return
        super().handle_exit(sig, frame)
        self._captured_signals.clear()

    def _drain_then_exit(self, host: Any, sig: int, frame: FrameType | None) -> None:
        async def drain() -> None:
            try:
                await host.stop()
            finally:
                uvicorn.Server.handle_exit(self, sig, frame)
                self._captured_signals.clear()

        self._draining = asyncio.ensure_future(drain())


def _host_of(app: Any) -> Any:
    """The common.hosting.Host an app keeps in ``app.state.host``, under uvicorn's wrappers."""
    for _ in range(8):
        if app is None:
            return None
        state = getattr(app, "state", None)
        host = getattr(state, "host", None) if state is not None else None
        if host is not None:
            return host
        app = getattr(app, "app", None)
    return None


def serve_http(
    app: Any,
    *,
    host: str,
    port: int,
    workers: int = 1,
    factory: bool = False,
    graceful_timeout: int = 15,
) -> None:
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "factory": factory,
        "workers": workers,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "log_level": "warning",
        "timeout_graceful_shutdown": graceful_timeout,
    }
    if workers > 1:
        # Several processes: uvicorn's supervisor forks workers that share the socket.
        uvicorn.run(app, **options)
        return
    GracefulServer(uvicorn.Config(app, **options)).run()
