#!/usr/bin/env bash
# Installs the offline validators tests/deploy needs, each only when missing (idempotent):
#   docker-compose (Debian; `docker-compose config` needs no Docker engine)
#   promtool       (Debian package prometheus)
#   kubernetes-validate (PyPI, into the project's virtualenv; ships the Kubernetes schemas)
#   the AsyncAPI 3.0 JSON Schema (npm package @asyncapi/specs, pinned; its schemas/3.0.0.json
#     and LICENSE into $VENV/share/asyncapi-specs, for tests/deploy/test_asyncapi_schema.py)
# kubectl (for `kubectl kustomize`) is used when present; without it the tests render the
# kustomizations themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
say() { printf '[install-tools] %s\n' "$*" >&2; }

need_apt=()
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]} (Debian)"
  apt-get update -qq >/dev/null
  # No recommends: docker-compose would pull in the whole Docker engine, prometheus the
  # node exporter; only the CLIs are needed.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
fi

ASYNCAPI_SPECS_VERSION=6.11.1
install_asyncapi_specs() {
  local dest="$VENV/share/asyncapi-specs" tmp
  if grep -qs "\"version\": \"$ASYNCAPI_SPECS_VERSION\"" "$dest/package.json" &&
    [ -f "$dest/schemas/3.0.0.json" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    say "installing npm (Debian)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  say "fetching @asyncapi/specs@$ASYNCAPI_SPECS_VERSION (npm) into $dest"
  tmp="$(mktemp -d)"
  (cd "$tmp" && NPM_CONFIG_UPDATE_NOTIFIER=false npm pack --silent \
    "@asyncapi/specs@$ASYNCAPI_SPECS_VERSION" >/dev/null)
  tar -xzf "$tmp"/asyncapi-specs-*.tgz -C "$tmp"
  rm -rf "$dest"
  mkdir -p "$dest/schemas"
  cp "$tmp/package/package.json" "$tmp/package/LICENSE" "$dest/"
  cp "$tmp/package/schemas/3.0.0.json" "$dest/schemas/"
  rm -rf "$tmp"
}

if [ -x "$VENV/bin/python" ]; then
  if ! "$VENV/bin/python" -c 'import kubernetes_validate' >/dev/null 2>&1; then
    say "installing kubernetes-validate into $VENV"
    "$VENV/bin/python" -m pip install -q 'kubernetes-validate>=1.30'
  fi
  install_asyncapi_specs
else
  say "no virtualenv at $VENV yet (make install creates it); skipping kubernetes-validate"
  say "and the AsyncAPI specs"
fi
say "docker-compose, promtool, kubernetes-validate and the AsyncAPI schema are available"
