"""Runs an ASGI app with uvicorn so that SIGTERM/SIGINT end in a graceful exit with status 0."""

from __future__ import annotations

from types import FrameType
from typing import Any

import uvicorn

__all__ = ["GracefulServer", "serve_http"]


class GracefulServer(uvicorn.Server):
    """uvicorn re-raises the captured signal after its graceful shutdown, so the process dies
    with -15; we finished our work (DESIGN.md §4), so we exit 0 instead."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


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
