"""Optional API-key / bearer-token auth for the write endpoints of a service (ASGI middleware).

Off when no key is configured (local use). With keys, a write request (POST, PUT, PATCH,
DELETE) needs ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; otherwise 401 problem
with ``WWW-Authenticate``. Reads, health and metrics stay open. Keys are compared as SHA-256
digests in constant time, so neither the key nor its length leaks through timing, and a key can
be configured as ``sha256:<hex>`` so the plain key need not sit in the environment.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable

from litestar.types import ASGIApp, Receive, Scope, Send

from common.http_limits import send_problem

__all__ = ["WRITE_METHODS", "ApiKeyAuthMiddleware", "parse_api_keys"]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_HASH_PREFIX = "sha256:"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def parse_api_keys(keys: Iterable[str]) -> tuple[bytes, ...]:
    """Plain keys or ``sha256:<hex>`` entries -> digests; an empty entry is ignored."""
    digests = []
    for raw in keys:
        key = raw.strip()
        if not key:
            continue
        if key.startswith(_HASH_PREFIX):
            try:
                digest = bytes.fromhex(key[len(_HASH_PREFIX) :])
            except ValueError as exc:
                raise ValueError("an API key given as sha256:<hex> is not valid hex") from exc
            if len(digest) != 32:
                raise ValueError("an API key given as sha256:<hex> needs 64 hex digits")
            digests.append(digest)
        else:
            digests.append(_digest(key))
    return tuple(digests)


def _presented_key(scope: Scope) -> str | None:
    bearer: str | None = None
    api_key: str | None = None
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            scheme, _, credentials = text.partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                bearer = credentials.strip()
        elif name == b"x-api-key":
            api_key = value.decode("latin-1").strip() or None
    return bearer or api_key


class ApiKeyAuthMiddleware:
    """401 problem + ``WWW-Authenticate: Bearer`` for write requests without a valid key."""

    def __init__(
        self,
        app: ASGIApp,
        keys: Iterable[str],
        *,
        realm: str = "orderflow",
        methods: frozenset[str] = WRITE_METHODS,
        on_rejected: Callable[[Scope], None] | None = None,
    ) -> None:
        self.app = app
        self.digests = parse_api_keys(keys)
        self.realm = realm
        self.methods = methods
        self.on_rejected = on_rejected

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    def _valid(self, presented: str) -> bool:
        digest = _digest(presented)
        ok = False
        for known in self.digests:  # no early exit: the time does not depend on which key
            ok |= hmac.compare_digest(digest, known)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.digests or scope["type"] != "http" or scope.get("method") not in self.methods:
            await self.app(scope, receive, send)
            return
        presented = _presented_key(scope)
        if presented is not None and self._valid(presented):
            await self.app(scope, receive, send)
            return
        if self.on_rejected is not None:
            self.on_rejected(scope)
        challenge = f'Bearer realm="{self.realm}"'
        detail = "this endpoint needs an API key (Authorization: Bearer <key> or X-API-Key)"
        if presented is not None:
            challenge += ', error="invalid_token"'
            detail = "the API key is not valid"
        await send_problem(send, scope, 401, detail, {"WWW-Authenticate": challenge})
