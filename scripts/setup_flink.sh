#!/usr/bin/env bash
# Set up Flink for this project: its own Python environment and the connector jars. Idempotent.
# Run after scripts/setup.sh (which provides Java 17, Maven and python3.11).
#
#   1. .venv-flink with python3.11: apache-flink (pinned in infra/flink_env.py) + what jobs/ needs
#      from pyproject.toml (fastavro), then the project itself with --no-deps (editable).
#      Skipped while .venv-flink/.pip-stamp matches the requirements and is newer than pyproject.toml.
#      Why a separate venv: apache-flink pins apache-beam 2.61, which pins numpy<2.2, cloudpickle~=2.2.1,
#      dill<0.3.2, python-dateutil<3, redis<6, pyarrow<17, grpcio<1.66, protobuf<6 (and Flink pandas<2.3);
#      the main .venv keeps its newer numpy/cloudpickle/dateutil (scikit-learn, ...).
#   2. The Flink Kafka connector (Maven Central) and kuailv-flink-kafka.jar (built from infra/flink/src)
#      into .stack/lib/flink (python -m infra.flink_env; a no-op once done).
#   3. A quick import check of pyflink + the project's schemas/projections inside .venv-flink.
#
# Env: PYTHON=python3.11 to pick the interpreter; KUAILV_FLINK_VENV to put the venv elsewhere.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

STEP="starting"
T_STEP=$SECONDS
step() {
    STEP="$*"
    T_STEP=$SECONDS
    printf '==> %s\n' "$*"
}
done_step() { printf '    done in %ss\n' "$((SECONDS - T_STEP))"; }
trap 'printf "setup_flink.sh: FAILED during: %s (exit %s)\n" "$STEP" "$?" >&2' ERR

PYTHON="${PYTHON:-python3.11}"
VENV="${KUAILV_FLINK_VENV:-$ROOT/.venv-flink}"

# ---------------------------------------------------------------- 0. prerequisites
step "checking prerequisites (java, mvn, $PYTHON)"
missing=()
command -v java >/dev/null 2>&1 || missing+=(java)
command -v mvn >/dev/null 2>&1 || missing+=(mvn)
command -v "$PYTHON" >/dev/null 2>&1 || missing+=("$PYTHON")
if [ "${#missing[@]}" -ne 0 ]; then
    echo "setup_flink.sh: FAILED: missing ${missing[*]}: run scripts/setup.sh first" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "setup_flink.sh: FAILED: $PYTHON is $("$PYTHON" -V 2>&1); apache-flink $("$PYTHON" -m infra.flink_env --requirements | head -1) is installed for 3.11 here" >&2
    exit 1
fi
java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
# First line of `mvn -v` without a pipe that closes early (SIGPIPE + pipefail would trip the ERR trap).
mvn_version=$(mvn -v 2>/dev/null || true)
mvn_version=$(sed 's/\x1b\[[0-9;]*m//g' <<<"${mvn_version%%$'\n'*}")
case "$java_major" in
    11|17|21) echo "    java $java_major, $mvn_version" ;;
    *) echo "setup_flink.sh: FAILED: Flink 2.x needs Java 11, 17 or 21; java is '$java_major'" >&2; exit 1 ;;
esac
mapfile -t REQS < <("$PYTHON" -m infra.flink_env --requirements)
echo "    requirements: ${REQS[*]} + project (--no-deps)"

# ---------------------------------------------------------------- 1. .venv-flink
if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
    done_step
else
    step "using existing $VENV ($("$VENV/bin/python" -V 2>&1))"
fi
if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    STEP="checking $VENV"
    echo "setup_flink.sh: FAILED: $VENV is $("$VENV/bin/python" -V 2>&1), needs 3.11; remove it and rerun" >&2
    exit 1
fi

STAMP="$VENV/.pip-stamp"
WANT="$(printf '%s\n' "${REQS[@]}")"
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    step "pip install ${REQS[*]}: up to date (stamp matches)"
else
    step "pip install ${REQS[*]} (about 30 s cold: apache-flink-libraries is a 330 MB wheel)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${REQS[@]}"
    done_step
    step "pip install --no-deps -e . (the project's code, none of its service dependencies)"
    # (setuptools' editable build warns on stderr every time; show its output only on failure)
    if ! out=$("$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1); then
        printf '%s\n' "$out" >&2
        false
    fi
    printf '%s\n' "${REQS[@]}" >"$STAMP"
    done_step
fi

# ---------------------------------------------------------------- 2. jars
step "Flink jars: flink-sql-connector-kafka + kuailv-flink-kafka.jar (.stack/lib/flink)"
"$VENV/bin/python" -m infra.flink_env
done_step

# ---------------------------------------------------------------- 3. check
step "checking .venv-flink imports"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import pyflink.datastream  # noqa: F401
import schemas.codec, projections.order_state  # noqa: F401,E401  (stdlib + fastavro only)
from infra import flink_kafka  # noqa: F401
print("    " + ", ".join(f"{n} {md.version(n)}" for n in ("apache-flink", "apache-beam", "numpy", "pandas", "fastavro")))
PY
# pip check, minus the project's own service dependencies that are deliberately not installed here.
if ! out=$("$VENV/bin/python" -m pip check 2>&1); then
    other=$(printf '%s\n' "$out" | grep -v '^kuailv-pipeline ' || true)
    if [ -n "$other" ]; then
        printf '%s\n' "$other" >&2
        echo "setup_flink.sh: FAILED: pip check found broken requirements in $VENV" >&2
        exit 1
    fi
fi
done_step

step "done in ${SECONDS}s. Run a job locally: $VENV/bin/python <job.py>; cluster: .venv/bin/python -m infra.flink_cluster start --profile dev"
