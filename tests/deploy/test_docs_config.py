"""The configuration table in docs/operations.md names every setting the code reads."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "order_service", "analytics_service", "notification_worker")


def settings_read_through_env() -> set[str]:
    """Names passed to ``env.<reader>("NAME", ...)`` (the typed settings readers) and to
    ``setting("NAME", ...)`` (a declared setting, common/declared_settings.py)."""
    names: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and _is_settings_reader(node.func)
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    names.add(node.args[0].value)
    return names


def _is_settings_reader(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id == "setting"
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == "env"
    )


def test_settings_scanner_finds_the_well_known_ones() -> None:
    assert {"RABBITMQ_URL", "ORDER_DATABASE_URL", "ANALYTICS_DATABASE_URL"} <= (
        settings_read_through_env()
    )


def test_every_setting_is_documented_in_the_configuration_table() -> None:
    docs = (ROOT / "docs" / "operations.md").read_text()
    table = docs[docs.index("## Configuration") :]
    missing = sorted(n for n in settings_read_through_env() if f"`{n}`" not in table)
    assert not missing, f"add these to docs/operations.md ## Configuration: {missing}"
