"""OpenAPI at /schema that works offline: a self-contained page (no CDN assets) plus the JSON."""

from __future__ import annotations

import html
import json
from typing import Any

from litestar import Request
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin

__all__ = ["OfflineSchemaPage", "offline_openapi_config"]

_METHODS = ("get", "post", "put", "patch", "delete")


class OfflineSchemaPage(OpenAPIRenderPlugin):
    """Lists every operation and embeds the schema; hosted UIs load scripts from a CDN, which
    an operator's air-gapped network or this project's CI cannot reach."""

    def __init__(self, *, path: str = "/") -> None:
        super().__init__(path=path)

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        info = openapi_schema.get("info", {})
        title = html.escape(f"{info.get('title', 'API')} {info.get('version', '')}".strip())
        rows = []
        for path, item in sorted(openapi_schema.get("paths", {}).items()):
            for method in _METHODS:
                operation = item.get(method)
                if operation is None:
                    continue
                rows.append(
                    f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}"
                    f"</code></td><td>{html.escape(operation.get('summary', ''))}</td></tr>"
                )
        schema_json = html.escape(json.dumps(openapi_schema, indent=2, default=str))
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}}
td{{padding:.2rem .8rem;border-bottom:1px solid #ddd}}pre{{background:#f6f6f6;padding:1rem;
overflow:auto}}</style></head><body>
<h1>{title}</h1>
<p>Machine-readable: <a href="openapi.json">openapi.json</a></p>
<table><thead><tr><th>method</th><th>path</th><th>summary</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h2>Schema</h2><pre>{schema_json}</pre>
</body></html>"""
        return page.encode()


def offline_openapi_config(title: str, version: str = "1.0.0") -> OpenAPIConfig:
    return OpenAPIConfig(
        title=title,
        version=version,
        path="/schema",
        render_plugins=[
            OfflineSchemaPage(path="/"),
            JsonRenderPlugin(path="/openapi.json"),
        ],
    )
