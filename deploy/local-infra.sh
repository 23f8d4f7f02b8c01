#!/usr/bin/env bash
# Makes sure MariaDB, Redis and RabbitMQ answer on localhost, starting (and if needed installing
# from Debian packages) whichever does not, then creates each service's database and user.
# Idempotent: safe to run before every `make run` / `make test`.
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

ensure_redis() {
  if port_open 127.0.0.1 "$REDIS_PORT"; then
    # The notification worker's send-once records live in Redis: keep them across a restart.
    redis-cli -p "$REDIS_PORT" config set appendonly yes >/dev/null 2>&1 || \
      say "could not turn on Redis persistence (not fatal)"
    return 0
  fi
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  say "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
    --appendonly yes --dir /var/lib/redis --logfile /var/log/redis/ci.log
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

ensure_mariadb
ensure_redis
ensure_rabbitmq
create_databases
import_rabbitmq_definitions
say "MariaDB, Redis and RabbitMQ are up"
