#!/usr/bin/env bash
# Set up a fresh Debian (12) machine for this project. Idempotent: run it again any time.
#
#   1. Debian packages: redis-server, influxdb (1.6.x), kcat, Java 17, Maven, Python 3.11 + venv,
#      postgresql (the optional event-store server, python -m infra.postgres)
#      (apt-get update runs only when something is missing)
#   2. .venv with python3.11, `pip install -e '.[dev]'` (skipped while .venv/.pip-stamp is newer than pyproject.toml)
#   3. the Apache Kafka broker jars from Maven Central into .stack/lib/kafka (python -m infra.kafka_jars)
#   4. Flink: .venv-flink (apache-flink and its pins, apart from .venv) and the Kafka connector jars
#   5. benchmark peers (.venv-peers); 6. the ETA model (kuailv train --quick --if-stale)
#   7. the dashboard: `npm ci` and `npm run build` in web/ (Leaflet, uPlot, esbuild from the npm registry)
#      -> web/dist, served by the API at /ui/; Chromium (Debian) and the Noto CJK fonts for the browser tests
#
# Run as root, or as a user with sudo (used for apt-get only). The Debian packages may start
# system services (redis on 6379, influxd on 8086, PostgreSQL's 'main' cluster on 5432); our stack never
# uses them: it runs its own processes on other ports (python -m infra.stack start, python -m infra.postgres
# start). Env: PYTHON=python3.11 to pick the interpreter.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

STEP="starting"
step() { STEP="$*"; printf '==> %s\n' "$*"; }
trap 'printf "setup.sh: FAILED during: %s (exit %s)\n" "$STEP" "$?" >&2' ERR

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "setup.sh: FAILED: not root and sudo is not installed; rerun as root" >&2
        exit 1
    fi
    SUDO=(sudo)
fi

PYTHON="${PYTHON:-python3.11}"
FOR_TESTS=0   # --for-tests (make test): everything but the benchmark peers' venv, which no test uses
[ "${1:-}" = "--for-tests" ] && FOR_TESTS=1

# ---------------------------------------------------------------- 1. Debian packages
step "checking Debian packages"
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v influxd >/dev/null 2>&1 || missing+=(influxdb)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
# Debian keeps initdb/postgres in /usr/lib/postgresql/<major>/bin, not on PATH.
pg_bin() { { ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -n1; }
[ -x "$(pg_bin)/initdb" ] || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)           # the dashboard's browser tests
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)  # Chinese pages render, not boxes
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    missing+=(python3.11 python3.11-venv)
elif ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3.11-venv)   # Debian ships ensurepip separately
fi

if [ "${#missing[@]}" -eq 0 ]; then
    echo "    all present: redis-server influxd kcat java mvn postgresql npm chromium fonts-noto-cjk $PYTHON"
else
    step "apt-get update (missing: ${missing[*]})"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    step "apt-get install ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

step "checking versions"
first_line() { "$@" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | grep -m1 . || true; }
echo "    $(first_line redis-server --version)"
echo "    $(first_line influxd version)"
echo "    kcat $(kcat -V 2>&1 | grep -m1 -o 'Version [0-9.]*' || true)"
echo "    $(first_line java -version)"
echo "    $(first_line mvn -v)"
echo "    $(first_line "$(pg_bin)/postgres" --version)"
echo "    node $(first_line node --version), npm $(first_line npm --version)"
echo "    $(chromium --version 2>/dev/null | grep -m1 Chromium || true)"  # (Debian's launcher warns on stderr)

# ---------------------------------------------------------------- 2. Python venv
if [ ! -x .venv/bin/python ]; then
    step "creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
else
    step "using existing .venv ($(.venv/bin/python -V 2>&1))"
fi
if ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    STEP="checking .venv"
    echo "setup.sh: FAILED: .venv is $(.venv/bin/python -V 2>&1), the project needs 3.11; remove .venv and rerun" >&2
    exit 1
fi

STAMP=.venv/.pip-stamp
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then
    step "pip install -e '.[dev]': up to date (stamp newer than pyproject.toml)"
else
    step "pip install -e '.[dev]'"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch "$STAMP"
fi

# ---------------------------------------------------------------- 3. Kafka jars
step "Kafka broker jars (.stack/lib/kafka)"
.venv/bin/python -m infra.kafka_jars

# ---------------------------------------------------------------- 4. Flink (own venv + connector jars)
step "Flink: .venv-flink and connector jars (scripts/setup_flink.sh)"
bash scripts/setup_flink.sh

# ---------------------------------------------------------------- 5. benchmark peers (own venv)
if [ "$FOR_TESTS" = 1 ]; then
    step "benchmark peers (.venv-peers): skipped for the tests (make setup or make bench installs them)"
else
    step "benchmark peers: .venv-peers (scripts/setup_peers.sh)"
    bash scripts/setup_peers.sh
fi

# ---------------------------------------------------------------- 6. the ETA / delay-risk model
# The workers load <state>/models/eta/current at start-up (KUAILV_ETA_MODEL=auto). Trained here, seeded and
# deterministic, only when there is none or it no longer loads (features or scikit-learn changed): ~30-60 s.
step "ETA / delay-risk model and stop-order travel times (kuailv train --quick --if-stale)"
.venv/bin/kuailv train --quick --if-stale --no-progress

# ---------------------------------------------------------------- 7. the dashboard (web/ -> web/dist)
# npm ci only when the lock file changed since the last install; the build only when a source is newer
# than the built page. Everything comes from the npm registry; nothing loads from a CDN at run time.
step "dashboard: npm ci and npm run build in web/ (served at /ui/)"
if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
    (cd web && npm ci --no-audit --no-fund --loglevel=error)
else
    echo "    node_modules up to date (package-lock.json unchanged)"
fi
if [ ! -f web/dist/index.html ] || [ -n "$(find web/src web/build.mjs web/package-lock.json -newer web/dist/index.html -print -quit)" ]; then
    (cd web && npm run --silent build)
else
    echo "    web/dist up to date"
fi

step "done. Start the local stack with: .venv/bin/python -m infra.stack start --profile dev"
