"""Where the bench points the services' databases, and what it prints of their URLs."""

from __future__ import annotations

import pytest

from loadtool.scratch_databases import ScratchDatabases
from loadtool.system import ProcfileSystem


def test_bench_urls_keep_each_services_user_and_server_and_change_only_the_database() -> None:
    env = {
        "ORDER_DATABASE_URL": "mysql+aiomysql://shop:s3cret@db.internal:3307/shop_orders",
    }
    urls = ScratchDatabases.for_bench(env).env()
    assert urls == {
        "ORDER_DATABASE_URL": "mysql+aiomysql://shop:s3cret@db.internal:3307/order_db_bench",
        "ANALYTICS_DATABASE_URL": (
            "mysql+aiomysql://analytics_svc:analytics_svc_local@127.0.0.1:3306/analytics_db_bench"
        ),
    }
    assert [d.user for d in ScratchDatabases.for_bench(env).databases] == ["shop", "analytics_svc"]


def test_a_service_already_on_the_bench_database_is_refused() -> None:
    env = {"ANALYTICS_DATABASE_URL": "mysql+aiomysql://a:b@127.0.0.1/analytics_db_bench"}
    with pytest.raises(ValueError, match="ANALYTICS_DATABASE_URL"):
        ScratchDatabases.for_bench(env)


def test_the_printed_command_masks_every_database_password(tmp_path) -> None:
    system = ProcfileSystem(ScratchDatabases.for_bench({}).env(), log_path=tmp_path / "log")
    assert "order_svc_local" not in system.command
    assert "analytics_svc_local" not in system.command
    assert "ORDER_DATABASE_URL=mysql+aiomysql://order_svc:***@127.0.0.1:3306/order_db_bench" in (
        system.command
    )
