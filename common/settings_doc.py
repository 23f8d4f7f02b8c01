"""The configuration tables of docs/operations.md, written from the settings declarations.

`python -m common.settings_doc docs/operations.md` (`make settings-doc`) rewrites every block

    <!-- settings package.module:SettingsClass "read by" -->
    ...
    <!-- /settings -->

with one row per setting that class declares (common/declared_settings.py); a test fails when
the file and the declarations disagree.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

from common.declared_settings import declared

__all__ = ["rewrite", "table"]

_BLOCK = re.compile(
    r'(<!-- settings (?P<target>[\w.]+:\w+) "(?P<read_by>[^"]+)" -->\n).*?(<!-- /settings -->)',
    re.DOTALL,
)


def _default(value: Any, secret: bool) -> str:
    if secret or value is None or value == "" or value == ():
        return "-"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, tuple):
        text = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    else:
        text = str(value)
    return f"`{text}`"


def table(cls: type[Any], read_by: str) -> str:
    """The markdown table of ``cls``'s settings. Shared ones (read by every process) are
    documented once: only in a block read by "all" (the topology's), left out elsewhere."""
    lines = ["| variable | default | read by | meaning |", "| --- | --- | --- | --- |"]
    for spec, _, default in declared(cls):
        if spec.shared != (read_by == "all"):
            continue
        lines.append(
            f"| `{spec.env}` | {_default(default, spec.secret)} | {spec.read_by or read_by} |"
            f" {spec.doc} |"
        )
    return "\n".join(lines) + "\n"


def _resolve(target: str) -> type[Any]:
    module, _, name = target.partition(":")
    cls: type[Any] = getattr(importlib.import_module(module), name)
    return cls


def rewrite(text: str) -> str:
    """``text`` with every settings block as the declarations say it."""

    def block(match: re.Match[str]) -> str:
        cls = _resolve(match["target"])
        return match.group(1) + table(cls, match["read_by"]) + match.group(4)

    return _BLOCK.sub(block, text)


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "docs/operations.md")
    path.write_text(rewrite(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
