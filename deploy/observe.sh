#!/usr/bin/env bash
# `make observe`: a local Prometheus (Debian package, installed when missing) in the foreground,
# scraping the processes `make run` starts, with the alert rules of docker-compose
# (deploy/prometheus/prometheus.local.yml; docs/operations.md#local-prometheus).
# PROMETHEUS_LISTEN (default 127.0.0.1:9090) and PROMETHEUS_DATA (default .observe/prometheus)
# move it; Ctrl-C stops it, and the data directory is kept between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

LISTEN="${PROMETHEUS_LISTEN:-127.0.0.1:9090}"
DATA="${PROMETHEUS_DATA:-.observe/prometheus}"
CONFIG=deploy/prometheus/prometheus.local.yml
say() { printf '[observe] %s\n' "$*" >&2; }

if ! command -v prometheus >/dev/null 2>&1; then
  say "installing prometheus (Debian)"
  apt-get update -qq >/dev/null
  # No recommends: they pull in the node exporter, which is not needed here.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
    >/dev/null
fi

promtool check config "$CONFIG" >/dev/null
mkdir -p "$DATA"
say "Prometheus on http://$LISTEN (targets: $LISTEN/targets, alerts: $LISTEN/alerts)"
say "scraping order 8080, analytics api 8081, notification worker 8082, analytics consumer 8083, rabbitmq 15692"
exec prometheus \
  --config.file="$CONFIG" \
  --storage.tsdb.path="$DATA" \
  --storage.tsdb.retention.time=2d \
  --web.listen-address="$LISTEN" \
  --web.enable-lifecycle
