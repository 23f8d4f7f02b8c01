"""python -m analytics_service [api|consumer|migrate|rebuild]"""

from __future__ import annotations

import asyncio
import sys

from common.settings import Env, SettingsError

USAGE = "usage: python -m analytics_service [api|consumer|migrate|rebuild]"


def _serve(factory: str, host: str, port: int) -> None:
    from common.serve import serve_http

    # SIGTERM becomes a lifespan shutdown (the consumer drains and acks first), then exit 0.
    serve_http(factory, host=host, port=port, factory=True)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "api"
    if command not in ("api", "consumer", "migrate", "rebuild"):
        print(f"{USAGE} (got {command!r})", file=sys.stderr)
        return 2
    try:
        from analytics_service.settings import AnalyticsSettings

        if command == "migrate":
            # A migrate job needs the database only (it has no broker user).
            database_url = Env().credential(
                "ANALYTICS_DATABASE_URL", AnalyticsSettings.database_url
            )
        else:
            settings = AnalyticsSettings.from_env()
    except SettingsError as exc:
        print(f"analytics_service: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if command == "migrate":
        from analytics_service.migrate import upgrade_to_head

        upgrade_to_head(database_url)
        print("analytics_service: migrations applied")
    elif command == "rebuild":
        from analytics_service.rebuild import rebuild, report

        report(asyncio.run(rebuild(settings)))
    elif command == "api":
        _serve("analytics_service.app:app_from_env", settings.http_host, settings.http_port)
    else:
        _serve(
            "analytics_service.consumer:app_from_env",
            settings.consumer_http_host,
            settings.consumer_http_port,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
