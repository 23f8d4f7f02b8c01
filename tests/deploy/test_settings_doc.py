"""The settings tables in docs/operations.md are the ones the declarations write."""

from __future__ import annotations

from pathlib import Path

from common.settings_doc import rewrite

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_settings_are_the_declared_ones():
    docs = (ROOT / "docs" / "operations.md").read_text()
    assert docs.count("<!-- settings ") == 4
    assert rewrite(docs) == docs, "run `make settings-doc` and commit docs/operations.md"
