"""MySQL plumbing every service shares: the async engine and what driver errors mean."""

from common.mysql.engine import build_engine, driver_connection
from common.mysql.errors import DbErrorKind, classify_db_error

__all__ = ["DbErrorKind", "build_engine", "classify_db_error", "driver_connection"]
