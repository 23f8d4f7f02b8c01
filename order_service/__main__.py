"""python -m order_service [serve|migrate|outbox list|replay|purge]"""

from __future__ import annotations

import sys

from common.settings import SettingsError


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "serve"
    try:
        from order_service.settings import OrderSettings

        settings = OrderSettings.from_env()
    except SettingsError as exc:
        print(f"order_service: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if command == "migrate":
        from order_service.migrate import upgrade_to_head

        upgrade_to_head(settings.database_url)
        print("order_service: migrations applied")
        return 0
    if command == "outbox":
        from order_service.outbox_cli import main as outbox_main

        return outbox_main(argv[1:], settings.database_url, settings.topology.exchange)
    if command == "serve":
        from common.serve import serve_http

        serve_http(
            "order_service.app:app_from_env",
            factory=True,
            host=settings.http_host,
            port=settings.http_port,
            workers=settings.workers,
        )
        return 0
    print(
        f"usage: python -m order_service [serve|migrate|outbox] (got {command!r})",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
