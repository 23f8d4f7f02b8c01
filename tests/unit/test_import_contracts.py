"""The import contracts in pyproject.toml hold (the same check `make lint` runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Dropping a contract from pyproject.toml must be a visible decision, not a quiet one.
CONTRACTS = {
    "The services never import each other",
    "common imports no service",
    "The order domain imports no adapter, API, wire contract or I/O library",
    "The analytics aggregation imports no adapter, API, wire contract or I/O library",
    "Use cases return domain results: they import no API module",
}


def _lint_imports() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
            "--no-cache",
            "--no-logo",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_import_contract_is_declared_and_kept():
    result = _lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    kept = {
        line.removesuffix(" KEPT").strip()
        for line in result.stdout.splitlines()
        if line.endswith(" KEPT")
    }
    assert kept == CONTRACTS, result.stdout
