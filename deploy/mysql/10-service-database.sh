#!/bin/bash
# MySQL 8 init script (/docker-entrypoint-initdb.d), shared by the order-db and analytics-db
# containers: each container creates ITS OWN database and user, granted only that database.
# SERVICE_DB_NAME, SERVICE_DB_USER and SERVICE_DB_PASSWORD come from docker-compose.yml.
# Runs once, on an empty data volume, while the entrypoint's temporary server listens on the
# socket only.
set -euo pipefail

: "${SERVICE_DB_NAME:?SERVICE_DB_NAME is required}"
: "${SERVICE_DB_USER:?SERVICE_DB_USER is required}"
: "${SERVICE_DB_PASSWORD:?SERVICE_DB_PASSWORD is required}"

mysql --protocol=socket -uroot -p"${MYSQL_ROOT_PASSWORD}" <<SQL
CREATE DATABASE IF NOT EXISTS \`${SERVICE_DB_NAME}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS '${SERVICE_DB_USER}'@'%' IDENTIFIED BY '${SERVICE_DB_PASSWORD}';
ALTER USER '${SERVICE_DB_USER}'@'%' IDENTIFIED BY '${SERVICE_DB_PASSWORD}';
GRANT ALL PRIVILEGES ON \`${SERVICE_DB_NAME}\`.* TO '${SERVICE_DB_USER}'@'%';
FLUSH PRIVILEGES;
SQL
echo "[init] database ${SERVICE_DB_NAME} and user ${SERVICE_DB_USER} ready"
