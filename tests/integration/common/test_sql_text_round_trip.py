"""The multi-statement SQL text against the real server: what goes in comes back unchanged."""

from __future__ import annotations

import aiomysql
import pytest
from sqlalchemy.engine import make_url

from common.sql_text import fast_escape
from order_service.settings import OrderSettings

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("no_backslash_escapes", [False, True])
async def test_text_and_bytes_read_back_exactly_as_written(no_backslash_escapes: bool):
    url = make_url(OrderSettings.from_env().database_url)
    conn = await aiomysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        db=url.database,
        charset="utf8mb4",
    )
    try:
        async with conn.cursor() as cursor:
            if no_backslash_escapes:
                await cursor.execute("SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'")
            fast = fast_escape(conn.escape, conn.escape_string)
            texts = ["plain", "ünïcödé ✓", "o'brien; --", *(f"a{c}b" for c in "\0\n\r\x1a'\"\\")]
            blob = bytes(range(256)) + '{"note": "ü\'\\\\"}'.encode()
            await cursor.execute("SELECT " + ", ".join(fast(v) for v in [*texts, blob]))
            row = await cursor.fetchone()
    finally:
        conn.close()
    assert list(row[:-1]) == texts
    assert bytes(row[-1]) == blob
