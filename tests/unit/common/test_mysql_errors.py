"""What a MySQL error means, the same whether SQLAlchemy or the raw driver raised it."""

from __future__ import annotations

import pymysql
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from common.mysql import DbErrorKind, classify_db_error

K = DbErrorKind


def _wrapped(cls, driver_error):
    return cls("INSERT ...", {}, driver_error)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (
            _wrapped(IntegrityError, pymysql.err.IntegrityError(1062, "Duplicate entry")),
            K.DUPLICATE_KEY,
        ),
        (pymysql.err.IntegrityError(1062, "Duplicate entry"), K.DUPLICATE_KEY),
        (_wrapped(OperationalError, pymysql.err.OperationalError(1213, "Deadlock")), K.CONFLICT),
        (_wrapped(OperationalError, pymysql.err.OperationalError(1205, "Lock wait")), K.CONFLICT),
        (pymysql.err.OperationalError(1213, "Deadlock"), K.CONFLICT),
        (pymysql.err.InternalError(1205, "Lock wait"), K.CONFLICT),
        (_wrapped(OperationalError, pymysql.err.OperationalError(2003, "refused")), K.UNAVAILABLE),
        (pymysql.err.OperationalError(2013, "Lost connection"), K.UNAVAILABLE),
        (pymysql.err.InterfaceError(0, ""), K.UNAVAILABLE),
        (PoolTimeoutError("QueuePool limit"), K.UNAVAILABLE),
        (ConnectionResetError("reset"), K.UNAVAILABLE),
        (TimeoutError(), K.UNAVAILABLE),
    ],
)
def test_a_database_condition_is_classified_by_what_the_caller_must_do(error, kind):
    assert classify_db_error(error) is kind


@pytest.mark.parametrize(
    "error",
    [
        _wrapped(IntegrityError, pymysql.err.IntegrityError(1452, "foreign key fails")),
        _wrapped(ProgrammingError, pymysql.err.ProgrammingError(1064, "syntax")),
        pymysql.err.DataError(1406, "Data too long"),
        ValueError("a bug"),
    ],
)
def test_a_bug_or_a_bad_row_is_no_database_condition_and_propagates(error):
    assert classify_db_error(error) is None


def test_a_connection_invalidated_under_a_statement_means_unavailable():
    error = ProgrammingError("SELECT 1", {}, pymysql.err.ProgrammingError(0, ""))
    error.connection_invalidated = True
    assert classify_db_error(error) is K.UNAVAILABLE
