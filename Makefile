# Every target is documented with '##'; `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Local development: the settings that carry credentials may use their local defaults
# (guest, the *_local passwords). Deployments leave it unset and must set every one of them.
export ORDERFLOW_ENV ?= local
ORDER_URL ?= http://127.0.0.1:8080
ANALYTICS_URL ?= http://127.0.0.1:8081
# make run connects each process as its own broker user on vhost orderflow (see Procfile).
NOTIFY_RABBITMQ_URL ?= amqp://notification-worker:notification-worker-local@127.0.0.1:5672/orderflow

.DEFAULT_GOAL := help
.PHONY: help install tools infra migrate run test test-unit test-integration test-cluster test-faults test-chaos bench bench-quick lint \
	fmt up down logs order analytics notification load dlq observe asyncapi settings-doc clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Install the project and its dev tools into .venv

infra: ## Make sure MariaDB, Redis and RabbitMQ are up, with databases and users
	bash deploy/local-infra.sh

tools: install ## Install the offline validators (docker-compose, promtool, kubernetes-validate)
	bash deploy/install-tools.sh

migrate: install ## Apply every service's database migrations
	$(PY) -m order_service migrate
	$(PY) -m analytics_service migrate

run: install infra migrate ## Run the whole system in the foreground (Ctrl-C stops it)
	$(PY) deploy/procfile_run.py Procfile

test: install tools infra migrate ## Run the whole test suite (unit, contract, integration, e2e, short fault/bench)
	$(BIN)/pytest -m "not faults and not bench and not cluster and not chaos" $(PYTEST_ARGS)

test-unit: install ## Run the fast unit and contract tests only (no infrastructure)
	$(BIN)/pytest tests/unit tests/contract $(PYTEST_ARGS)

test-cluster: install infra migrate ## Kill a RabbitMQ cluster node and process replicas under load (long; starts its own 3-node cluster)
	$(BIN)/pytest -m cluster -s $(PYTEST_ARGS)

test-faults: install infra migrate ## Run the full fault-injection suite (long)
	$(BIN)/pytest -m faults $(PYTEST_ARGS)

test-chaos: install infra migrate ## A 15-minute randomized fault run under load (CHAOS_SEED replays, CHAOS_SECONDS)
	$(BIN)/pytest -m chaos -s $(PYTEST_ARGS)

bench: install infra migrate ## Full benchmark of what make run starts, on databases of its own (saga on, then off; CPU/order; bench-results.json)
	$(PY) -m loadtool.bench --json bench-results.json

bench-quick: install infra migrate ## A one-minute benchmark smoke, saga on (the one make test runs)
	$(PY) -m loadtool.bench --quick

lint: install ## ruff, mypy and the import contracts (pyproject.toml [tool.importlinter])
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy common order_service analytics_service notification_worker loadtool tests
	$(BIN)/lint-imports --no-logo

fmt: install ## Format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

up: ## Start the whole system with docker compose
	docker compose up -d --build

down: ## Stop the docker compose system
	docker compose down

logs: ## Follow the docker compose logs
	docker compose logs -f

order: install ## Create a sample order on the running order service
	@curl -sS -X POST $(ORDER_URL)/orders -H 'content-type: application/json' \
		-d '{"customer_id":"cust-1","product_id":"prod-1","quantity":2,"total_amount":"19.98","currency":"USD"}'; echo

analytics: ## Print the analytics summary of the running system
	@curl -sS $(ANALYTICS_URL)/analytics/summary; echo

notification: ## Show the notification worker's sent counts and health
	@curl -sS http://127.0.0.1:8082/health/ready; echo
	@curl -sS http://127.0.0.1:8082/metrics | grep -E '^notification_worker_(sent|failed|skipped|events_retried|events_parked|scheduled)' || true

load: install ## Run the load tool against the running system (COUNT, CONCURRENCY)
	$(PY) -m loadtool --count $${COUNT:-1000} --concurrency $${CONCURRENCY:-16}

dlq: install ## List the notification worker's parked messages (of the system make run starts)
	RABBITMQ_URL=$(NOTIFY_RABBITMQ_URL) $(PY) -m notification_worker dlq list

observe: ## Run a local Prometheus (Debian package) scraping what `make run` started, with the alert rules
	bash deploy/observe.sh

asyncapi: install ## Write docs/asyncapi.json from the event contract and the topology
	$(PY) -m common.asyncapi docs/asyncapi.json

settings-doc: install ## Write the declared settings' tables into docs/operations.md
	$(PY) -m common.settings_doc docs/operations.md

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
