#!/usr/bin/env bash
# Installs the offline validators tests/deploy needs, each only when missing (idempotent):
#   docker-compose (Debian; `docker-compose config` needs no Docker engine)
#   promtool       (Debian package prometheus)
#   kubernetes-validate (PyPI, into the project's virtualenv; ships the Kubernetes schemas)
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

if [ -x "$VENV/bin/python" ]; then
  if ! "$VENV/bin/python" -c 'import kubernetes_validate' >/dev/null 2>&1; then
    say "installing kubernetes-validate into $VENV"
    "$VENV/bin/python" -m pip install -q 'kubernetes-validate>=1.30'
  fi
else
  say "no virtualenv at $VENV yet (make install creates it); skipping kubernetes-validate"
fi
say "docker-compose, promtool and kubernetes-validate are available"
