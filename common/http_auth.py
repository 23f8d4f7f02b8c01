"""Optional API-key / bearer-token auth for a service's HTTP API (ASGI middleware).

Off when no key is configured (local use). With keys, every request (reads too: a listing shows
every customer's orders) needs ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``;
otherwise 401 problem with ``WWW-Authenticate``. Health and metrics stay open for probes and
scrapes. Keys are compared as SHA-256 digests in constant time, so neither the key nor its
length leaks through timing, and a key can be configured as ``sha256:<hex>`` so the plain key
need not sit in the environment. The caller's identity (``caller_of``) is a digest of its key,
so per-caller state (Idempotency-Keys) is scoped without storing the key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable

from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from common.http_limits import DEFAULT_EXEMPT_PREFIXES, send_problem
from common.observability import Metrics

__all__ = [
    "WRITE_METHODS",
    "ApiKeyAuthMiddleware",
    "api_key_middleware",
    "caller_of",
    "parse_api_keys",
]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_HASH_PREFIX = "sha256:"
# Where the middleware leaves the authenticated caller's id in the ASGI scope.
_CALLER = "orderflow.caller"


def caller_of(scope: Scope) -> str | None:
    """The authenticated caller (hex digest of its API key), or None when keys are off."""
    caller = scope.get(_CALLER)
    return caller if isinstance(caller, str) else None


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
    """401 problem + ``WWW-Authenticate: Bearer`` for requests without a valid key.

    Every method needs a key unless ``methods`` narrows it; paths under ``exempt_prefixes``
    (health, metrics) never do.
    """

    def __init__(
        self,
        app: ASGIApp,
        keys: Iterable[str],
        *,
        realm: str = "orderflow",
        methods: frozenset[str] | None = None,
        exempt_prefixes: Iterable[str] = DEFAULT_EXEMPT_PREFIXES,
        on_rejected: Callable[[Scope], None] | None = None,
    ) -> None:
        self.app = app
        self.digests = parse_api_keys(keys)
        self.realm = realm
        self.methods = methods
        self.exempt_prefixes = tuple(exempt_prefixes)
        self.on_rejected = on_rejected

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    def _valid(self, digest: bytes) -> bool:
        ok = False
        for known in self.digests:  # no early exit: the time does not depend on which key
            ok |= hmac.compare_digest(digest, known)
        return ok

    def _open(self, scope: Scope) -> bool:
        if not self.digests or scope["type"] != ScopeType.HTTP:
            return True
        if self.methods is not None and scope.get("method") not in self.methods:
            return True
        path = str(scope.get("path", ""))
        return any(path.startswith(p) for p in self.exempt_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._open(scope):
            await self.app(scope, receive, send)
            return
        presented = _presented_key(scope)
        digest = _digest(presented) if presented is not None else None
        if digest is not None and self._valid(digest):
            scope[_CALLER] = digest.hex()  # type: ignore[literal-required]
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


def api_key_middleware(
    keys: Iterable[str], *, realm: str, metrics: Metrics
) -> list[DefineMiddleware]:
    """The auth layer of a service whose API is otherwise open (none when no key is set);
    refusals are counted in ``<service>_http_rejected_total{reason="unauthorized"}``."""
    keys = tuple(keys)
    if not keys:
        return []
    rejected = metrics.counter(
        "http_rejected_total", "Requests refused before the handler, by reason", ("reason",)
    )
    rejected.labels("unauthorized")
    return [
        DefineMiddleware(
            ApiKeyAuthMiddleware,
            keys=keys,
            realm=realm,
            on_rejected=lambda _: rejected.labels("unauthorized").inc(),
        )
    ]
