#!/usr/bin/env bash
# The benchmark peers' own Python environment (.venv-peers). Idempotent; `make bench` needs it.
#
# The peers are what a user could write with other libraries (bench/peers/): a Quix Streams app and a
# naive per-event Faust agent. quixstreams 3.28 pins confluent-kafka<2.13 (the project uses 2.16.1)
# and Faust is no longer a dependency of the worker, so they live apart from .venv, with the
# project's pure code installed --no-deps (schemas/ and projections/ need only fastavro).
# cramjam lets aiokafka (Faust) read the lz4-compressed batches our producers write.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STEP="starting"
step() { STEP="$*"; printf '==> %s\n' "$*"; }
trap 'printf "setup_peers.sh: FAILED during: %s (exit %s)\n" "$STEP" "$?" >&2' ERR

PYTHON="${PYTHON:-python3.11}"
VENV="$ROOT/.venv-peers"
# The telemetry peer (bench/peers/quix_telemetry.py) runs the geofence fold and the learnt model too: the same
# shapely, numpy, scikit-learn, skops, numba and ortools as .venv, and the influxdb client of Quix's InfluxDB1Sink.
REQS=("quixstreams[redis]==3.28.1" "faust-streaming==0.15.3" "fastavro==1.13.1" "orjson>=3.10" "cramjam>=2.8"
      "influxdb==5.3.2" "shapely==2.2.0" "numpy==2.4.6" "scikit-learn==1.9.1" "skops==0.16.0" "numba==0.68.1"
      "ortools==9.12.4544")

if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.pip-stamp"
WANT="$(printf '%s\n' "${REQS[@]}")"
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    step "benchmark peers (.venv-peers): up to date"
else
    step "pip install ${REQS[*]} into .venv-peers"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${REQS[@]}"
    if ! out=$("$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1); then
        printf '%s\n' "$out" >&2
        false
    fi
    "$VENV/bin/python" -c 'import quixstreams, faust, schemas.codec, projections.order_state'
    printf '%s\n' "${REQS[@]}" >"$STAMP"
fi
