"""What a MySQL error means for the caller, whether SQLAlchemy or the raw driver raised it.

Each service maps the kinds to its own ports' errors; the codes and the exception types are
read here only.
"""

from __future__ import annotations

import enum

import pymysql
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

__all__ = ["DbErrorKind", "answered_by_server", "classify_db_error"]

_DUPLICATE_KEY = 1062
_LOCK_WAIT_TIMEOUT = 1205
_DEADLOCK = 1213


class DbErrorKind(enum.Enum):
    DUPLICATE_KEY = "duplicate_key"
    # A deadlock or lock wait timeout: the transaction was rolled back and may be retried.
    CONFLICT = "conflict"
    # The database cannot be reached or did not answer in time.
    UNAVAILABLE = "unavailable"


def _errno(exc: BaseException) -> int | None:
    args = getattr(exc.orig, "args", ()) if isinstance(exc, DBAPIError) else exc.args
    return args[0] if args and isinstance(args[0], int) else None


def classify_db_error(exc: BaseException) -> DbErrorKind | None:
    """None: not a database condition the caller handles (a bug, a constraint other than a
    duplicate key); let it propagate."""
    if isinstance(exc, pymysql.err.MySQLError) and not isinstance(exc, DBAPIError):
        return _classify_driver_error(exc)
    if isinstance(exc, IntegrityError) and _errno(exc) == _DUPLICATE_KEY:
        return DbErrorKind.DUPLICATE_KEY
    if isinstance(exc, OperationalError) and _errno(exc) in (_LOCK_WAIT_TIMEOUT, _DEADLOCK):
        return DbErrorKind.CONFLICT
    if isinstance(exc, (OperationalError, PoolTimeoutError, OSError)):
        return DbErrorKind.UNAVAILABLE
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return DbErrorKind.UNAVAILABLE
    return None


def _classify_driver_error(exc: pymysql.err.MySQLError) -> DbErrorKind | None:
    """Errors of the raw driver (multi-statement packets), classified like SQLAlchemy's."""
    code = _errno(exc)
    if isinstance(exc, pymysql.err.IntegrityError) and code == _DUPLICATE_KEY:
        return DbErrorKind.DUPLICATE_KEY
    if code in (_LOCK_WAIT_TIMEOUT, _DEADLOCK):
        return DbErrorKind.CONFLICT
    if isinstance(exc, (pymysql.err.OperationalError, pymysql.err.InterfaceError)):
        return DbErrorKind.UNAVAILABLE
    return None


def answered_by_server(exc: pymysql.err.MySQLError) -> bool:
    """An error the server answered (duplicate key, lock wait): the connection is fine and the
    statements after the failing one of a multi-statement packet did not run. Client-side codes
    (2000+) mean the connection broke, and whether a COMMIT in the packet ran is unknown."""
    code = _errno(exc)
    return code is not None and code < 2000
