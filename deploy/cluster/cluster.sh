#!/usr/bin/env bash
# A 3-node RabbitMQ cluster on one machine, from the Debian rabbitmq-server install, for tests and
# for trying the system on a cluster (docs/scaling.md). It never touches the machine's own node
# (rabbit@localhost on 5672): every node here has its own name, ports, data and log directories,
# config files and Erlang cookie (a private HOME), and the scripts are called directly (not the
# /usr/sbin wrapper, which switches to the rabbitmq user and so to the machine's cookie).
#
# Usage: deploy/cluster/cluster.sh up | down | status | urls | leader QUEUE | leaders | pid N |
#                                  kill N | start N | ctl N ARGS...
#   up       start the nodes, join them into one cluster, add vhost/users (definitions.json)
#   down     stop every node and delete CLUSTER_DIR (nothing of the cluster stays behind)
#   kill N   SIGKILL node N (1..3) at once: a crash, no shutdown
#   start N  start node N again (it rejoins the cluster from its data directory)
#   leader Q the node name leading queue Q (vhost CLUSTER_VHOST); leaders: all queues (JSON)
# Settings (env): CLUSTER_DIR (/tmp/orderflow-cluster), CLUSTER_NAME (c), CLUSTER_AMQP_PORT
# (5781: nodes on 5781, 5782, 5783), distribution ports AMQP+20000, management AMQP+10000,
# CLUSTER_VHOST (orderflow).
set -euo pipefail

CLUSTER_DIR="${CLUSTER_DIR:-/tmp/orderflow-cluster}"
CLUSTER_NAME="${CLUSTER_NAME:-c}"
CLUSTER_AMQP_PORT="${CLUSTER_AMQP_PORT:-5781}"
CLUSTER_VHOST="${CLUSTER_VHOST:-orderflow}"
CLUSTER_NODES=3
RABBITMQ_BIN="${RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}"
DEFINITIONS="${CLUSTER_DEFINITIONS:-$(cd "$(dirname "$0")/.." && pwd)/rabbitmq/definitions.json}"

say() { printf '[cluster] %s\n' "$*" >&2; }

node_name() { echo "rabbit-${CLUSTER_NAME}$1@localhost"; }
amqp_port() { echo $((CLUSTER_AMQP_PORT + $1 - 1)); }
dist_port() { echo $((CLUSTER_AMQP_PORT + 20000 + $1 - 1)); }
mgmt_port() { echo $((CLUSTER_AMQP_PORT + 10000 + $1 - 1)); }
node_dir() { echo "$CLUSTER_DIR/n$1"; }

port_open() {  # port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && exec 3>&- 3<&- && return 0
  return 1
}

# The environment one node's scripts (server and CLI) run with.
node_env() {  # n
  local dir
  dir="$(node_dir "$1")"
  echo HOME="$CLUSTER_DIR/home" \
    RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
    RABBITMQ_NODENAME="$(node_name "$1")" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$(amqp_port "$1")" \
    RABBITMQ_DIST_PORT="$(dist_port "$1")" \
    RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" \
    RABBITMQ_PID_FILE="$dir/pid" \
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_PLUGINS_EXPAND_DIR="$dir/plugins-expand" \
    ERL_EPMD_ADDRESS=127.0.0.1
}

ctl() {  # n args...
  local n="$1"
  shift
  env $(node_env "$n") "$RABBITMQ_BIN/rabbitmqctl" -n "$(node_name "$n")" "$@"
}

write_node_files() {  # n
  local dir
  dir="$(node_dir "$1")"
  mkdir -p "$dir/mnesia" "$dir/log" "$CLUSTER_DIR/home"
  # Only ours: the machine's /etc/rabbitmq/rabbitmq-env.conf names its own node.
  cat >"$dir/rabbitmq-env.conf" <<ENV
# Written by deploy/cluster/cluster.sh; the node's settings come from the environment.
ENV
  cat >"$dir/rabbitmq.conf" <<CONF
# Written by deploy/cluster/cluster.sh for $(node_name "$1").
listeners.tcp.default = 127.0.0.1:$(amqp_port "$1")
management.tcp.port = $(mgmt_port "$1")
management.tcp.ip = 127.0.0.1
loopback_users.guest = true
# A node that loses its peers keeps serving what still has a quorum; nothing to pause.
cluster_partition_handling = ignore
disk_free_limit.absolute = 200MB
vm_memory_high_watermark.relative = 0.2
CONF
  echo '[rabbitmq_management].' >"$dir/enabled_plugins"
}

write_cookie() {
  mkdir -p "$CLUSTER_DIR/home"
  if [ ! -f "$CLUSTER_DIR/home/.erlang.cookie" ]; then
    # The cluster's own cookie: the machine's node (another cookie) cannot be reached with it.
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr 'a-f' 'A-F' >"$CLUSTER_DIR/home/.erlang.cookie"
    chmod 400 "$CLUSTER_DIR/home/.erlang.cookie"
  fi
}

start_node() {  # n
  local n="$1" port
  port="$(amqp_port "$n")"
  if port_open "$port"; then
    say "$(node_name "$n") already answers on $port"
    return 0
  fi
  write_node_files "$n"
  say "starting $(node_name "$n") (amqp $port, dist $(dist_port "$n"), management $(mgmt_port "$n"))"
  env $(node_env "$n") setsid "$RABBITMQ_BIN/rabbitmq-server" \
    >>"$(node_dir "$n")/log/console.log" 2>&1 </dev/null &
}

wait_node() {  # n
  ctl "$1" -q wait --timeout 120 "$(node_dir "$1")/pid" >/dev/null
  local i
  for ((i = 0; i < 600; i++)); do
    port_open "$(amqp_port "$1")" && return 0
    sleep 0.1
  done
  say "$(node_name "$1") did not open $(amqp_port "$1")"
  return 1
}

up() {
  local n
  for ((n = 1; n <= CLUSTER_NODES; n++)); do
    if port_open "$(amqp_port "$n")" || port_open "$(dist_port "$n")"; then
      if [ ! -d "$(node_dir "$n")" ]; then
        say "port $(amqp_port "$n") or $(dist_port "$n") is taken by something else"
        exit 1
      fi
    fi
  done
  write_cookie
  for ((n = 1; n <= CLUSTER_NODES; n++)); do start_node "$n"; done
  for ((n = 1; n <= CLUSTER_NODES; n++)); do wait_node "$n"; done
  for ((n = 2; n <= CLUSTER_NODES; n++)); do
    if ctl "$n" -q cluster_status --formatter json 2>/dev/null | grep -q "$(node_name 1)"; then
      continue
    fi
    say "joining $(node_name "$n") to $(node_name 1)"
    ctl "$n" -q stop_app
    ctl "$n" -q join_cluster "$(node_name 1)"
    ctl "$n" -q start_app
  done
  ctl 1 -q await_online_nodes "$CLUSTER_NODES" --timeout 120 >/dev/null
  # The vhost and one user per service, as the machine's node gets them (deploy/local-infra.sh).
  ctl 1 -q import_definitions "$DEFINITIONS" >/dev/null
  ctl 1 -q add_vhost "$CLUSTER_VHOST" >/dev/null 2>&1 || true
  ctl 1 -q set_permissions -p "$CLUSTER_VHOST" guest '.*' '.*' '.*' >/dev/null
  say "up: $(urls)"
}

stop_node() {  # n: SIGTERM the node, then SIGKILL what is left of it
  local pid
  pid="$(cat "$(node_dir "$1")/pid" 2>/dev/null || true)"
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 150 && $(kill -0 "$pid" 2>/dev/null && echo 1 || echo 0); i++)); do
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

down() {
  local n
  for ((n = 1; n <= CLUSTER_NODES; n++)); do stop_node "$n"; done
  # Anything still running from this cluster's directories (by pid, never by name).
  local left
  left="$(pgrep -f -- "$CLUSTER_DIR/n[0-9]/mnesia" || true)"
  for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$CLUSTER_DIR"
  say "down"
}

urls() {  # comma-separated AMQP URLs of every node (guest, vhost CLUSTER_VHOST)
  local n out=""
  for ((n = 1; n <= CLUSTER_NODES; n++)); do
    out+="${out:+,}amqp://guest:guest@127.0.0.1:$(amqp_port "$n")/$CLUSTER_VHOST"
  done
  echo "$out"
}

status() {
  local n
  for ((n = 1; n <= CLUSTER_NODES; n++)); do
    if port_open "$(amqp_port "$n")"; then state=up; else state=down; fi
    echo "$(node_name "$n") amqp=$(amqp_port "$n") dist=$(dist_port "$n") mgmt=$(mgmt_port "$n") $state"
  done
}

leader() {  # queue: asked of the first node that answers
  local n
  for ((n = 1; n <= CLUSTER_NODES; n++)); do
    port_open "$(amqp_port "$n")" || continue
    if ctl "$n" -q list_queues -p "$CLUSTER_VHOST" name leader --no-table-headers 2>/dev/null |
      awk -v q="$1" '$1 == q { print $2; found = 1 } END { exit !found }'; then
      return 0
    fi
  done
  return 1
}

leaders() {  # JSON: every queue of CLUSTER_VHOST with its leader, members and online members
  local n
  for ((n = 1; n <= CLUSTER_NODES; n++)); do
    port_open "$(amqp_port "$n")" || continue
    ctl "$n" -q list_queues -p "$CLUSTER_VHOST" name leader members online --formatter json &&
      return 0
  done
  return 1
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  urls) urls ;;
  leader) leader "$2" ;;
  leaders) leaders ;;
  pid) cat "$(node_dir "$2")/pid" ;;
  kill) kill -KILL "$(cat "$(node_dir "$2")/pid")" ;;
  start) start_node "$2" && wait_node "$2" ;;
  ctl) n="$2"; shift 2; ctl "$n" "$@" ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
