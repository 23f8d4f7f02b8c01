#!/usr/bin/env bash
# Makes sure MariaDB, Redis and RabbitMQ answer on localhost, starting (and if needed installing
# from Debian packages) whichever does not, then creates each service's database and user.
# Idempotent: safe to run before every `make run` / `make test`.
# Usage: deploy/local-infra.sh [mariadb] [redis] [rabbitmq]   (no argument: all three, then the
# databases, users and broker definitions).
set -euo pipefail

MYSQL_HOST="${MYSQL_HOST:-127.0.0.1}"
MYSQL_PORT="${MYSQL_PORT:-3306}"
MYSQL_ROOT_USER="${MYSQL_ROOT_USER:-root}"
MYSQL_ROOT_PASSWORD="${MYSQL_ROOT_PASSWORD:-}"
ORDER_DB_NAME="${ORDER_DB_NAME:-order_db}"
ORDER_DB_USER="${ORDER_DB_USER:-order_svc}"
ORDER_DB_PASSWORD="${ORDER_DB_PASSWORD:-order_svc_local}"
ANALYTICS_DB_NAME="${ANALYTICS_DB_NAME:-analytics_db}"
ANALYTICS_DB_USER="${ANALYTICS_DB_USER:-analytics_svc}"
ANALYTICS_DB_PASSWORD="${ANALYTICS_DB_PASSWORD:-analytics_svc_local}"
REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_DIR="${REDIS_DIR:-/var/lib/redis}"
REDIS_CONF="${REDIS_CONF:-/etc/redis/orderflow-${REDIS_PORT}.conf}"
REDIS_LOG="${REDIS_LOG:-/var/log/redis/orderflow-${REDIS_PORT}.log}"
RABBITMQ_PORT="${RABBITMQ_PORT:-5672}"
RABBITMQ_MANAGEMENT_URL="${RABBITMQ_MANAGEMENT_URL:-http://127.0.0.1:15672}"
RABBITMQ_MANAGEMENT_USER="${RABBITMQ_MANAGEMENT_USER:-guest}"
RABBITMQ_MANAGEMENT_PASSWORD="${RABBITMQ_MANAGEMENT_PASSWORD:-guest}"
RABBITMQ_DEFINITIONS="${RABBITMQ_DEFINITIONS:-$(dirname "$0")/rabbitmq/definitions.json}"

say() { printf '[local-infra] %s\n' "$*" >&2; }

port_open() {  # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && exec 3>&- 3<&- && return 0
  return 1
}

wait_port() {  # name host port seconds
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    port_open "$2" "$3" && return 0
    sleep 0.1
  done
  say "$1 did not answer on $2:$3 within $4 s"
  return 1
}

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then
    say "apt-get update"
    apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  say "installing $*"
  apt-get install -y -qq "$@" >/dev/null
}

ensure_mariadb() {
  if port_open "$MYSQL_HOST" "$MYSQL_PORT"; then return 0; fi
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server mariadb-client
  say "starting MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_port MariaDB "$MYSQL_HOST" "$MYSQL_PORT" 60
}

# The notification worker's send-once records live in Redis: a Redis that restarts empty makes
# every redelivery or replay after it send again (docs/operations.md). So Redis runs from a
# config file with the append-only file on, and a setting changed at runtime is written back.
write_redis_conf() {
  [ -f "$REDIS_CONF" ] && return 0
  mkdir -p "$(dirname "$REDIS_CONF")" "$REDIS_DIR" "$(dirname "$REDIS_LOG")"
  cat >"$REDIS_CONF" <<CONF
# Written by deploy/local-infra.sh: the notification worker's sent records must survive a restart.
bind 127.0.0.1 -::1
port $REDIS_PORT
daemonize yes
dir $REDIS_DIR
logfile $REDIS_LOG
appendonly yes
appendfsync everysec
save ""
CONF
}

redis_cmd() { redis-cli -p "$REDIS_PORT" "$@" 2>/dev/null | tr -d '\r'; }

persist_running_redis() {
  if [ "$(redis_cmd config get appendonly | tail -n 1)" != yes ]; then
    if [ "$(redis_cmd config set appendonly yes)" != OK ]; then
      say "WARNING: could not turn on Redis persistence on port $REDIS_PORT"
      return 0
    fi
  fi
  # CONFIG SET lasts until the next restart: write it back into the server's config file.
  if [ -n "$(redis_cmd info server | sed -n 's/^config_file://p')" ]; then
    [ "$(redis_cmd config rewrite)" = OK ] && return 0
    say "WARNING: Redis on port $REDIS_PORT did not write append-only into its config file"
    return 0
  fi
  say "WARNING: Redis on port $REDIS_PORT runs without a config file: append-only is on only" \
    "until it restarts, and a restart then forgets every sent notification. Stop it" \
    "(redis-cli -p $REDIS_PORT shutdown) and run this script again to start it from $REDIS_CONF."
}

ensure_redis() {
  if port_open 127.0.0.1 "$REDIS_PORT"; then
    persist_running_redis
    return 0
  fi
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  write_redis_conf
  say "starting Redis from $REDIS_CONF (append-only)"
  redis-server "$REDIS_CONF"
  wait_port Redis 127.0.0.1 "$REDIS_PORT" 30
}

ensure_rabbitmq() {
  if ! port_open 127.0.0.1 "$RABBITMQ_PORT"; then
    command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
    say "starting RabbitMQ"
    rabbitmq-server -detached
    wait_port RabbitMQ 127.0.0.1 "$RABBITMQ_PORT" 120
  fi
  # Management UI and the Prometheus endpoint are what operators look at; enabling is idempotent.
  if command -v rabbitmq-plugins >/dev/null 2>&1; then
    rabbitmq-plugins enable rabbitmq_management rabbitmq_prometheus >/dev/null 2>&1 || \
      say "could not enable management/prometheus plugins (not fatal)"
  fi
}

mysql_root() {
  local args=(-h "$MYSQL_HOST" -P "$MYSQL_PORT" -u "$MYSQL_ROOT_USER")
  [ -n "$MYSQL_ROOT_PASSWORD" ] && args+=("-p$MYSQL_ROOT_PASSWORD")
  mariadb "${args[@]}" "$@"
}

create_databases() {
  command -v mariadb >/dev/null 2>&1 || apt_install mariadb-client
  local i
  for ((i = 0; i < 100; i++)); do
    mysql_root -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.2
  done
  say "creating databases and users (each user granted only its own database)"
  mysql_root <<SQL
CREATE DATABASE IF NOT EXISTS \`${ORDER_DB_NAME}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE DATABASE IF NOT EXISTS \`${ANALYTICS_DB_NAME}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS '${ORDER_DB_USER}'@'%' IDENTIFIED BY '${ORDER_DB_PASSWORD}';
CREATE USER IF NOT EXISTS '${ORDER_DB_USER}'@'localhost' IDENTIFIED BY '${ORDER_DB_PASSWORD}';
CREATE USER IF NOT EXISTS '${ANALYTICS_DB_USER}'@'%' IDENTIFIED BY '${ANALYTICS_DB_PASSWORD}';
CREATE USER IF NOT EXISTS '${ANALYTICS_DB_USER}'@'localhost' IDENTIFIED BY '${ANALYTICS_DB_PASSWORD}';
ALTER USER '${ORDER_DB_USER}'@'%' IDENTIFIED BY '${ORDER_DB_PASSWORD}';
ALTER USER '${ORDER_DB_USER}'@'localhost' IDENTIFIED BY '${ORDER_DB_PASSWORD}';
ALTER USER '${ANALYTICS_DB_USER}'@'%' IDENTIFIED BY '${ANALYTICS_DB_PASSWORD}';
ALTER USER '${ANALYTICS_DB_USER}'@'localhost' IDENTIFIED BY '${ANALYTICS_DB_PASSWORD}';
GRANT ALL PRIVILEGES ON \`${ORDER_DB_NAME}\`.* TO '${ORDER_DB_USER}'@'%';
GRANT ALL PRIVILEGES ON \`${ORDER_DB_NAME}\`.* TO '${ORDER_DB_USER}'@'localhost';
GRANT ALL PRIVILEGES ON \`${ANALYTICS_DB_NAME}\`.* TO '${ANALYTICS_DB_USER}'@'%';
GRANT ALL PRIVILEGES ON \`${ANALYTICS_DB_NAME}\`.* TO '${ANALYTICS_DB_USER}'@'localhost';
FLUSH PRIVILEGES;
SQL
}

# The vhost `orderflow`, one user per service with least-privilege permissions, and the
# topology, from the committed definitions (deploy/rabbitmq/generate_definitions.py). Importing
# is idempotent: existing objects are updated, nothing else on the broker is touched.
import_rabbitmq_definitions() {
  if [ ! -f "$RABBITMQ_DEFINITIONS" ]; then
    say "no RabbitMQ definitions at $RABBITMQ_DEFINITIONS; skipping broker users"
    return 0
  fi
  say "importing RabbitMQ vhost, per-service users and permissions from $RABBITMQ_DEFINITIONS"
  if command -v rabbitmqctl >/dev/null 2>&1 && \
     rabbitmqctl -q import_definitions "$RABBITMQ_DEFINITIONS" >/dev/null 2>&1; then
    return 0
  fi
  # A broker elsewhere (container): the management HTTP API takes the same file.
  local i
  for ((i = 0; i < 60; i++)); do
    if curl -fsS -u "$RABBITMQ_MANAGEMENT_USER:$RABBITMQ_MANAGEMENT_PASSWORD" \
        -H 'content-type: application/json' -X POST --data-binary "@$RABBITMQ_DEFINITIONS" \
        "$RABBITMQ_MANAGEMENT_URL/api/definitions" >/dev/null 2>&1; then
      return 0
    fi
    sleep 1
  done
  say "could not import RabbitMQ definitions (rabbitmqctl and the management API both failed)"
  return 1
}

if [ "$#" -gt 0 ]; then
  for component in "$@"; do
    case "$component" in
      mariadb | redis | rabbitmq) "ensure_$component" ;;
      *) say "unknown component $component (mariadb, redis, rabbitmq)"; exit 2 ;;
    esac
  done
  say "up: $*"
  exit 0
fi
ensure_mariadb
ensure_redis
ensure_rabbitmq
create_databases
import_rabbitmq_definitions
say "MariaDB, Redis and RabbitMQ are up"
