"""A process on the common host whose drain lasts until the test says so: what SIGTERM does to
its HTTP while it drains (tests/integration/common/test_drain_first.py).

``python -m tests.support.draining_process PORT DRAIN_FIRST(0|1) DIR``: the stop writes
DIR/draining when it begins and returns once DIR/release exists.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from common.hosting import Host
from common.observability import Metrics
from common.serve import serve_http


class HeldDrain:
    def __init__(self, directory: Path) -> None:
        self._dir = directory

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        (self._dir / "draining").write_text("draining")
        while not (self._dir / "release").exists():
            await asyncio.sleep(0.02)


def main(argv: list[str]) -> None:
    port, drain_first, directory = int(argv[0]), argv[1] == "1", Path(argv[2])
    host = Host(
        "draining", HeldDrain(directory), supervisors=(), checks={}, drain_first=drain_first
    )
    serve_http(host.app(Metrics("draining")), host="127.0.0.1", port=port)


if __name__ == "__main__":
    main(sys.argv[1:])
