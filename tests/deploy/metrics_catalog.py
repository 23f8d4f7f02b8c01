"""What the dashboards and alerts ask for, and what the code exports: metric names on both sides.

Shared by the static check (tests/deploy) and the live one (tests/e2e), so both read the
dashboards and alert rules the same way.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = ROOT / "deploy" / "grafana" / "dashboards"
ALERTS_FILE = ROOT / "deploy" / "prometheus" / "alerts.yml"
SERVICES = ("order_service", "analytics_service", "notification_worker")

# Prometheus adds `up` to every scrape; it is not exported by anyone.
SYNTHETIC = frozenset({"up"})

# The rabbitmq_prometheus metrics the dashboards may use (per-object mode, see rabbitmq.conf).
# The live test checks every rabbitmq_* name against the real broker's /metrics/per-object.
RABBITMQ_METRICS = frozenset(
    {
        "rabbitmq_queue_messages",
        "rabbitmq_queue_messages_ready",
        "rabbitmq_queue_messages_unacked",
        "rabbitmq_queue_consumers",
        "rabbitmq_connections",
        "rabbitmq_channels",
        "rabbitmq_queues",
    }
)

_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "inf",
        "nan",
        "atan2",
        "le",
    }
)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names_in(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords and labels left out)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before in ".$":
            continue  # 1e-9, Grafana $variables
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # rows


def dashboard_queries() -> dict[str, str]:
    """'<dashboard> / <panel> / <refId>' -> PromQL, for every dashboard target."""
    queries: dict[str, str] = {}
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in _panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    where = f"{dashboard['title']} / {panel['title']} / {target.get('refId')}"
                    queries[where] = target["expr"]
    return queries


def alert_queries() -> dict[str, str]:
    rules = yaml.safe_load(ALERTS_FILE.read_text())
    return {
        f"alert {rule.get('alert') or rule.get('record')}": rule["expr"]
        for group in rules["groups"]
        for rule in group["rules"]
    }


def referenced_metrics() -> dict[str, set[str]]:
    """metric name -> where it is used (dashboards and alert rules)."""
    used: dict[str, set[str]] = {}
    for where, expr in {**dashboard_queries(), **alert_queries()}.items():
        for name in metric_names_in(expr):
            used.setdefault(name, set()).add(where)
    return used


# --- what the code defines --------------------------------------------------------------------

_KINDS = ("counter", "gauge", "histogram")


def exposed_names(kind: str, name: str) -> set[str]:
    """The sample names prometheus_client exposes for one metric."""
    if kind == "counter":
        base = name.removesuffix("_total")
        return {f"{base}_total", f"{base}_created"}
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
    return {name}


def _metric_calls(tree: ast.AST) -> Iterator[tuple[str, str]]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _KINDS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.func.attr, node.args[0].value


def _sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)


def _common_providers() -> dict[str, set[tuple[str, str]]]:
    """Top-level classes/functions of common/ -> metrics they create, directly or through
    another provider they name (fixpoint)."""
    bodies: dict[str, tuple[set[tuple[str, str]], set[str]]] = {}
    for path in _sources("common"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                bodies[node.name] = (set(_metric_calls(node)), names)
    provides = {name: set(calls) for name, (calls, _) in bodies.items()}
    changed = True
    while changed:
        changed = False
        for name, (_, refs) in bodies.items():
            for ref in refs & provides.keys():
                if ref != name and not provides[ref] <= provides[name]:
                    provides[name] |= provides[ref]
                    changed = True
    return {name: calls for name, calls in provides.items() if calls}


def code_metrics() -> dict[str, set[str]]:
    """service -> every sample name it exports, found by reading the code (no import needed).

    A service exports what its own package creates with Metrics(<service>).counter/gauge/
    histogram, plus the metrics of every common/ class or function it uses (HttpMetrics,
    ConsumerMetrics, ...), all prefixed with the service name.
    """
    providers = _common_providers()
    result: dict[str, set[str]] = {}
    for service in SERVICES:
        files = _sources(service)
        names: set[str] = set()
        text = ""
        for path in files:
            source = path.read_text()
            text += source
            for kind, name in _metric_calls(ast.parse(source)):
                names |= exposed_names(kind, f"{service}_{name}")
        for provider, calls in providers.items():
            if re.search(rf"\b{re.escape(provider)}\b", text):
                for kind, name in calls:
                    names |= exposed_names(kind, f"{service}_{name}")
        result[service] = names
    return result


def known_metrics() -> set[str]:
    exported: set[str] = set(SYNTHETIC | RABBITMQ_METRICS)
    for names in code_metrics().values():
        exported |= names
    return exported


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{|\s)")


def names_in_exposition(text: str) -> set[str]:
    """Sample names in a Prometheus text exposition (what a /metrics endpoint returned)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match:
            names.add(match.group(1))
    return names
