# Kuailv order pipeline. `make run` and `make test` work on a fresh Debian machine.
SHELL := /bin/bash
PY := .venv/bin/python
PROFILE ?= dev
ORDERS ?= 300
SPEEDUP ?= 0

.PHONY: setup run test unit integration stop stop-test status bench lint clean

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

lint:
	@.venv/bin/ruff check .

clean: stop stop-test
	rm -rf .stack/dev .stack/test
