"""python -m order_service [serve|fulfilment|migrate|outbox list|replay|purge]"""

from __future__ import annotations

import sys

from common.settings import Env, SettingsError

USAGE = "usage: python -m order_service [serve|fulfilment|migrate|outbox]"


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "serve"
    if command not in ("serve", "fulfilment", "migrate", "outbox"):
        print(f"{USAGE} (got {command!r})", file=sys.stderr)
        return 2
    try:
        from order_service.settings import OrderSettings

        if command in ("serve", "fulfilment"):
            settings = OrderSettings.from_env()
        else:
            # The one-off commands need the database only (a migrate job has no broker user).
            env = Env()
            database_url = env.credential("ORDER_DATABASE_URL", OrderSettings.database_url)
            from common.messaging.topology import TopologySettings

            exchange = TopologySettings.from_env(env).exchange
    except SettingsError as exc:
        print(f"order_service: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if command == "migrate":
        from order_service.migrate import upgrade_to_head

        upgrade_to_head(database_url)
        print("order_service: migrations applied")
        return 0
    if command == "outbox":
        from order_service.outbox_cli import main as outbox_main

        return outbox_main(argv[1:], database_url, exchange)
    from common.serve import serve_http

    # The fulfilment process is one process: more of them compete on the queue.
    fulfilment = command == "fulfilment"
    serve_http(
        f"order_service.{'fulfilment_app' if fulfilment else 'app'}:app_from_env",
        factory=True,
        host=settings.http_host,
        port=settings.fulfilment_http_port if fulfilment else settings.http_port,
        workers=1 if fulfilment else settings.workers,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
