"""Runs the schemathesis CLI against a live service's OpenAPI schema and returns its verdict.

The CLI (rather than the pytest plugin) because the services run as real processes started by
the test, whose URLs are only known at run time.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CHECKS", "FuzzResult", "run_schemathesis"]

# Every response must be: not a 5xx, a status the schema documents, the documented content
# type and headers, and a body valid against the documented schema. Generated invalid input
# must be rejected with a 4xx (negative_data_rejection).
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    )
)


@dataclass(frozen=True)
class FuzzResult:
    exit_code: int
    output: str
    requests: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _st() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError("schemathesis is not installed in this environment")
    return found


async def run_schemathesis(
    schema_url: str,
    *,
    max_examples: int,
    report_dir: Path,
    seed: int | None = None,
    # The coverage phase crashes inside schemathesis 4.32 on Python 3.11.7 (hypothesis lambda
    # source parsing: "AST constructor recursion depth mismatch"); examples + fuzzing run.
    phases: str = "examples,fuzzing",
    timeout: float = 600.0,
) -> FuzzResult:
    ndjson = report_dir / "events.ndjson"
    args = [
        _st(),
        "run",
        schema_url,
        "--checks",
        CHECKS,
        "--max-examples",
        str(max_examples),
        "--phases",
        phases,
        "--workers",
        "4",
        "--request-timeout",
        "15",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(ndjson),
        "--suppress-health-check",
        "all",
    ]
    if seed is not None:
        args += ["--seed", str(seed)]
    # cwd: schemathesis keeps a .schemathesis/ cache in the working directory, not the repo's.
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=report_dir
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        raise
    return FuzzResult(proc.returncode or 0, out.decode(errors="replace"), _count_requests(ndjson))


def _count_requests(path: Path) -> int:
    """Interactions recorded in the ndjson event stream (best effort: 0 if the format moved)."""
    if not path.exists():
        return 0
    count = 0
    for line in path.read_text(errors="replace").splitlines():
        count += line.count('"request":')
    return count
