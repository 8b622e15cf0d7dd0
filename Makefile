# Kuailv order pipeline. `make run` and `make test` work on a fresh Debian machine.
SHELL := /bin/bash
PY := .venv/bin/python
PROFILE ?= dev
ORDERS ?= 300
SPEEDUP ?= 0

.PHONY: setup run test unit integration stop stop-test status bench bench-flink lint clean \
	flink-job flink-cluster-start flink-cluster-stop flink-submit

setup:            ## install system packages, Python deps and Kafka jars (idempotent)
	@bash scripts/setup.sh

run: setup        ## start the dev stack and run the main job end to end
	@$(PY) -m infra.stack start --profile $(PROFILE)
	@.venv/bin/kuailv --profile $(PROFILE) run --orders $(ORDERS) --speedup $(SPEEDUP)

test: setup       ## the whole suite: lint, unit, integration, e2e (starts and stops the test stack)
	@.venv/bin/ruff check .
	@$(PY) -m pytest tests -p no:cacheprovider

unit: setup
	@$(PY) -m pytest tests/unit -p no:cacheprovider -q

integration: setup
	@$(PY) -m pytest tests/integration tests/e2e -p no:cacheprovider

stop:             ## stop the dev stack (data stays in .stack/dev)
	@$(PY) -m infra.stack stop --profile $(PROFILE)

stop-test:
	@$(PY) -m infra.stack stop --profile test

status:
	@$(PY) -m infra.stack status --profile $(PROFILE)

bench: setup      ## decode -> fold -> Redis throughput and peak RSS on a fixed log (starts/stops test Redis)
	@$(PY) -m bench.order_projection

bench-flink: setup  ## the order-state Flink job's throughput, process and thread mode (test stack Kafka)
	@$(PY) -m bench.flink_order_state

# ---- Flink (docs/flink.md) ----------------------------------------------------------------
flink-job: setup  ## the order-state job in an embedded mini-cluster against the dev Kafka (Ctrl-C stops)
	@$(PY) -m infra.stack start --profile $(PROFILE) --only kafka
	@.venv-flink/bin/python -m jobs.order_state_job --profile $(PROFILE) --local

flink-cluster-start: setup  ## local standalone Flink cluster (web UI http://127.0.0.1:18081)
	@$(PY) -m infra.flink_cluster start --profile $(PROFILE)

flink-submit:     ## submit the order-state job to the local cluster (detached)
	@$(PY) -m infra.flink_cluster flink --profile $(PROFILE) -- run -d -pym jobs.order_state_job --profile $(PROFILE)

flink-cluster-stop:
	@$(PY) -m infra.flink_cluster stop --profile $(PROFILE)

lint:
	@.venv/bin/ruff check .

clean: stop stop-test flink-cluster-stop
	rm -rf .stack/dev .stack/test
