"""The bench's MariaDB counters count what lands in the server: a written row grows the redo."""

from __future__ import annotations

import socket

import pytest

from common.testing import unique_name
from loadtool.mariadb_counters import per_order, read_counters
from loadtool.mysql_admin import MySqlAdmin

pytestmark = pytest.mark.integration

ROW_BYTES = 200_000


async def _admin(*sql: str) -> None:
    async with MySqlAdmin().cursor() as cur:
        for statement in sql:
            await cur.execute(statement)


async def test_a_row_written_between_two_reads_shows_in_the_redo_and_the_statements() -> None:
    admin = MySqlAdmin()
    db = unique_name("counters").replace("-", "_")
    await _admin(f"CREATE DATABASE {db}", f"CREATE TABLE {db}.t (id INT PRIMARY KEY, v LONGBLOB)")
    try:
        before = await read_counters(admin)
        await _admin(f"INSERT INTO {db}.t VALUES (1, REPEAT('x', {ROW_BYTES}))")
        after = await read_counters(admin)
    finally:
        await _admin(f"DROP DATABASE {db}")
    figures = per_order(before, after, 1)
    assert figures is not None
    assert figures["redo_kb_per_order"] >= ROW_BYTES / 1024
    assert figures["statements_per_order"] >= 1


async def test_a_server_that_does_not_answer_gives_no_counters() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert await read_counters(MySqlAdmin(port=port)) is None
