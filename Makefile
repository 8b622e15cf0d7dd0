# Kuailv order pipeline. `make run` and `make test` work on a fresh Debian machine.
SHELL := /bin/bash
PY := .venv/bin/python
PROFILE ?= dev
ORDERS ?= 300
SPEEDUP ?= 1000

.PHONY: setup setup-tests run test unit integration screenshots report stop stop-test status bench bench-path bench-peers bench-flink bench-flink-all bench-replay bench-geofences bench-api bench-sealing bench-scale bench-models bench-telemetry load \
	lint clean flink-job flink-cluster-start flink-cluster-stop flink-submit

setup:            ## install system packages, Python deps and Kafka jars (idempotent)
	@bash scripts/setup.sh

run: setup        ## start the dev stack and run the main job end to end
	@$(PY) -m infra.stack start --profile $(PROFILE)
	@.venv/bin/kuailv --profile $(PROFILE) run --orders $(ORDERS) --speedup $(SPEEDUP)

setup-tests:
	@bash scripts/setup.sh --for-tests

test: setup-tests ## the whole suite: lint, unit (on both cores), integration, e2e and the dashboard in Chromium (starts and stops the test stack)
	@.venv/bin/ruff check .
	@echo "==> the pages' pure helpers (node --test, web/test)"
	@cd web && npm test --silent
	@echo "==> unit tests (pytest-xdist, 2 processes)"
	@$(PY) -m pytest tests/unit -n 2 -q -p no:cacheprovider
	@echo "==> integration, end-to-end and browser tests against the real test stack"
	@$(PY) -m pytest tests --ignore=tests/unit -p no:cacheprovider --durations=25

unit: setup-tests
	@$(PY) -m pytest tests/unit -n 2 -p no:cacheprovider -q

integration: setup-tests
	@$(PY) -m pytest tests/integration tests/e2e -p no:cacheprovider

screenshots: setup-tests ## the dashboard's browser tests, saving a screenshot of every page in docs/screenshots/
	@KUAILV_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/e2e/test_dashboard_browser.py -p no:cacheprovider

report: setup     ## train the delay-risk / ETA models on 3 weeks of simulated history, write docs/model-report/ (~10 min)
	@.venv/bin/kuailv report

stop:             ## stop the dev stack (data stays in .stack/dev)
	@$(PY) -m infra.stack stop --profile $(PROFILE)

stop-test:
	@$(PY) -m infra.stack stop --profile test

status:
	@$(PY) -m infra.stack status --profile $(PROFILE)

bench: setup      ## every benchmark below, in one run (about 25 minutes; starts/stops what it needs of the test stack)
	@echo "==> 1/9 the order path in process vs the bare decode (bench.order_projection)"
	@$(PY) -m bench.order_projection
	@echo "==> 2/9 the worker vs Quix Streams and a naive Faust agent through Kafka (bench.kafka_peers)"
	@$(PY) -m bench.kafka_peers
	@echo "==> 3/9 the Flink job vs the worker, per CPU-second (bench.flink_order_state)"
	@$(PY) -m bench.flink_order_state --modes thread,process --parallelism 1 --startup-runs 2
	@echo "==> 4/9 replay and rebuild of 1,000,000 events (bench.replay)"
	@$(PY) -m bench.replay
	@echo "==> 5/9 GPS points through the geofence step, 10,000 fences, 2,000 vans (bench.geofences)"
	@$(PY) -m bench.geofences
	@echo "==> 6/9 the API: order reads and 1,000 WebSocket clients against kuailv serve (bench.api_load)"
	@$(PY) -m bench.api_load
	@echo "==> 7/9 sealing personal data: the write path and the fold, sealed vs plain (bench.sealing)"
	@$(PY) -m bench.sealing
	@echo "==> 8/9 the learnt ETA / delay-risk model and the OR-Tools stop order in the driver fold (bench.eta_inference)"
	@$(PY) -m bench.eta_inference
	@echo "==> 9/9 the telemetry path through Kafka: the worker vs a Quix Streams app, 10,000 fences, 2,000 vans (bench.telemetry_path)"
	@$(PY) -m bench.telemetry_path

bench-telemetry: setup ## GPS -> geofences + ETA + rules + the learnt model -> InfluxDB + Redis + alerts: the worker vs a Quix Streams app
	@$(PY) -m bench.telemetry_path

bench-models: setup ## what the learnt ETA / delay-risk model and the OR-Tools stop order cost per estimate and per record
	@$(PY) -m bench.eta_inference

bench-api: setup   ## order reads (p50/p99) and 1,000 WebSocket clients (change -> client delay) against kuailv serve
	@$(PY) -m bench.api_load

bench-path: setup   ## decode -> fold -> Redis + projection records in process, against the bare decode
	@$(PY) -m bench.order_projection

bench-peers: setup  ## kuailv worker vs a Quix Streams app vs a naive Faust agent, same log, same Kafka
	@$(PY) -m bench.kafka_peers

bench-flink: setup  ## the order-state Flink job (thread and process mode) vs the worker, per CPU-second
	@$(PY) -m bench.flink_order_state

bench-flink-all: setup  ## every projection's Flink job vs the worker's agent, per CPU-second (test stack running)
	@$(PY) -m bench.flink_projections

bench-replay: setup ## kuailv replay (file, topic) and rebuild of 1,000,000 events
	@$(PY) -m bench.replay

bench-geofences: setup ## GPS points/s through index + geofence fold with 10,000 fences and 2,000 vans
	@$(PY) -m bench.geofences

bench-sealing: setup ## the cost of sealing personal data (AES-256-GCM): write path and fold, sealed vs plain, in process
	@$(PY) -m bench.sealing

load: setup       ## the city-scale load test on the live `load` stack: 5,000 events/s 10 min, 3x 1 min, drain; report in docs/load/ (~20 min)
	@$(PY) -m bench.load

bench-scale: setup ## one worker vs two on the scale stack, then kill -9 of one mid-load: takeover time, nothing lost (~2-4 min)
	@$(PY) -m bench.scale_out

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
