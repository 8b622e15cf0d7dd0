"""Flink's own Python environment and jars: where they are, and fetching/building the jars once.

PyFlink (``apache-flink``) pins apache-beam 2.54-2.61, which pins numpy<2.2, redis<6,
cloudpickle~=2.2.1, dill<0.3.2, python-dateutil<3 (via flink), pandas<2.3, pyarrow<17,
grpcio<1.66 and protobuf<6. The main ``.venv`` has newer numpy, cloudpickle and dateutil
(scikit-learn wants them), so Flink gets its own virtualenv, ``.venv-flink``, made by
``scripts/setup_flink.sh``: apache-flink plus this project installed with ``--no-deps`` and only
what ``jobs/`` imports (``schemas/`` and ``projections/`` need fastavro, nothing else).

The Java side lives in ``infra/flink/pom.xml``: Maven copies the Flink Kafka connector
(``org.apache.flink:flink-sql-connector-kafka:<KAFKA_CONNECTOR_VERSION>``) from Maven Central and
builds ``kuailv-flink-kafka.jar`` (the raw-record (de)serializers of ``infra/flink_kafka.py``) into
``<state_dir>/lib/flink/``, shared by all profiles. A marker with the versions and a hash of the
pom and the Java sources makes this a no-op once done; editing either builds again.

Stdlib only: importable from ``.venv`` (setup, ``infra.flink_cluster``) and ``.venv-flink`` (jobs).

    python -m infra.flink_env           # fetch/build the jars if needed; print versions and paths
    python -m infra.flink_env --check   # exit 1 (with the reason) unless venv and jars are ready
    python -m infra.flink_env --requirements   # what setup_flink.sh pip-installs into .venv-flink
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from config import settings as settings_mod
from infra import processes

# Keep in step: scripts/setup_flink.sh installs FLINK_VERSION; infra/flink/pom.xml has
# flink.version and the connector version (<connector>-<flink minor>).
FLINK_VERSION = "2.2.1"
KAFKA_CONNECTOR_VERSION = "5.0.0-2.2"
# What jobs/ needs from the project's own dependencies, installed into .venv-flink with the
# version pyproject.toml pins (the project itself goes in with --no-deps). scikit-learn, skops and
# ortools resolve against Flink's numpy<2.2 and protobuf<6; cloudpickle stays at apache-beam's pin
# (a newer joblib would otherwise pull cloudpickle 3 and break beam).
JOB_PROJECT_DEPS = ("fastavro", "orjson", "shapely", "scikit-learn", "skops", "ortools")  # what jobs/ import
FLINK_KEEP = ("cloudpickle~=2.2.1",)  # pins of apache-beam that the extra deps must not move
CONNECTOR_JAR = f"flink-sql-connector-kafka-{KAFKA_CONNECTOR_VERSION}.jar"
UDF_JAR = "kuailv-flink-kafka.jar"

FLINK_DIR = Path(__file__).resolve().parent / "flink"
POM = FLINK_DIR / "pom.xml"
JAVA_SRC = FLINK_DIR / "src" / "main" / "java"
CONF_TEMPLATES = FLINK_DIR / "conf"
MARKER = ".complete"


class FlinkEnvError(RuntimeError):
    """The Flink venv or jars are missing, or Maven failed."""


# ----------------------------------------------------------------------------- the venv


def venv_dir() -> Path:
    """``.venv-flink`` at the project root (override: ``KUAILV_FLINK_VENV``)."""
    override = os.environ.get("KUAILV_FLINK_VENV")
    return Path(override) if override else settings_mod.PROJECT_ROOT / ".venv-flink"


def python_executable() -> Path:
    """The interpreter of the Flink venv: give it to ``env.set_python_executable`` / ``-pyexec``."""
    return venv_dir() / "bin" / "python"


def pythonpath() -> str:
    """``python.pythonpath`` for thread mode: the embedded interpreter (pemja) does not process the
    venv's ``.pth`` files, so it needs site-packages and the project root (installed editable)."""
    site_packages = sorted(venv_dir().glob("lib/python3*/site-packages"))
    return os.pathsep.join([*(str(p) for p in site_packages), str(settings_mod.PROJECT_ROOT)])


def python_settings(execution_mode: str = "process") -> dict[str, str]:
    """Flink configuration for running a job from this checkout (mini-cluster, or the local cluster
    of ``infra.flink_cluster``, whose config.yaml already has the same values)::

        conf = Configuration()
        for key, value in flink_env.python_settings("thread").items():
            conf.set_string(key, value)
        env = StreamExecutionEnvironment.get_execution_environment(conf)

    Paths are this machine's: a job submitted to a remote cluster must not send them.
    ``execution_mode``: ``process`` (Beam workers, one Python process per slot) or ``thread``
    (pemja, inside the TaskManager JVM; faster here)."""
    if execution_mode not in ("process", "thread"):
        raise ValueError(f"python.execution-mode must be process or thread, got {execution_mode!r}")
    python = str(python_executable())
    return {
        "python.executable": python,
        "python.client.executable": python,
        "python.pythonpath": pythonpath(),
        "python.execution-mode": execution_mode,
    }


def flink_home() -> Path:
    """The Flink distribution inside the installed pyflink package (bin/, lib/, opt/, conf/)."""
    found = sorted(venv_dir().glob("lib/python3*/site-packages/pyflink"))
    if not found or not (found[-1] / "bin" / "flink").is_file():
        raise FlinkEnvError(f"no pyflink in {venv_dir()}: run scripts/setup_flink.sh")
    return found[-1]


def requirements() -> list[str]:
    """What ``scripts/setup_flink.sh`` pip-installs into .venv-flink (besides the project, --no-deps)."""
    import re
    import tomllib

    with open(settings_mod.PROJECT_ROOT / "pyproject.toml", "rb") as fh:
        declared = tomllib.load(fh)["project"]["dependencies"]
    by_name = {re.split(r"[ <>=!~;\[]", spec, maxsplit=1)[0].lower(): spec for spec in declared}
    missing = [name for name in JOB_PROJECT_DEPS if name not in by_name]
    if missing:
        raise FlinkEnvError(f"JOB_PROJECT_DEPS {missing} are not dependencies in pyproject.toml")
    return [f"apache-flink=={FLINK_VERSION}", *(by_name[name] for name in JOB_PROJECT_DEPS), *FLINK_KEEP]


# ----------------------------------------------------------------------------- the jars


def lib_dir(state_dir: Path | None = None) -> Path:
    """Where the jars live: ``<state_dir>/lib/flink`` (shared by the dev and test profiles)."""
    state_dir = state_dir if state_dir is not None else settings_mod.load().state_dir
    return state_dir / "lib" / "flink"


def jar_paths(target: Path | None = None) -> list[Path]:
    """The jars a job must load (connector first). Raises FlinkEnvError if they are not there."""
    target = target if target is not None else lib_dir()
    if not jars_present(target):
        raise FlinkEnvError(f"Flink jars missing or stale in {target}: run scripts/setup_flink.sh")
    return [target / CONNECTOR_JAR, target / UDF_JAR]


def jar_urls(target: Path | None = None) -> list[str]:
    """``file://`` URLs for ``env.add_jars(*jar_urls())`` (also what ``pipeline.jars`` wants)."""
    return [path.resolve().as_uri() for path in jar_paths(target)]


def _stamp() -> str:
    digest = hashlib.sha256(POM.read_bytes())
    for source in sorted(JAVA_SRC.rglob("*.java")):
        digest.update(source.relative_to(JAVA_SRC).as_posix().encode())
        digest.update(source.read_bytes())
    return f"flink {FLINK_VERSION} kafka-connector {KAFKA_CONNECTOR_VERSION} sources-sha256 {digest.hexdigest()[:16]}\n"


def jars_present(target: Path) -> bool:
    marker = target / MARKER
    return (
        marker.is_file()
        and marker.read_text() == _stamp()
        and (target / CONNECTOR_JAR).is_file()
        and (target / UDF_JAR).is_file()
    )


def ensure_jars(target: Path | None = None, *, quiet: bool = False) -> Path:
    """Make sure the connector and our jar are in ``target``; run Maven if not. Returns ``target``."""
    state_dir = settings_mod.load().state_dir
    target = target if target is not None else lib_dir(state_dir)
    if jars_present(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with processes.locked(target.parent / ".flink-jars.lock"):  # one build at a time
        if jars_present(target):
            return target
        mvn = shutil.which("mvn")
        if mvn is None:
            raise FlinkEnvError("mvn not found: install Maven (apt-get install -y maven) or run scripts/setup.sh")
        if shutil.which("java") is None:
            raise FlinkEnvError("java not found: install a JDK 17 (apt-get install -y openjdk-17-jdk-headless)")
        if not quiet:
            print(
                f"flink: fetching flink-sql-connector-kafka {KAFKA_CONNECTOR_VERSION} and building {UDF_JAR} "
                f"with Maven into {target} ...",
                flush=True,
            )
        staging = target.with_name(target.name + ".partial")
        build_dir = state_dir / "build" / "flink"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(build_dir, ignore_errors=True)
        cmd = [
            mvn, "-B", "-q", "-f", str(POM), "package", "dependency:copy-dependencies",
            f"-Dkuailv.build.dir={build_dir}", f"-DoutputDirectory={staging}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        built = build_dir / UDF_JAR
        if proc.returncode != 0 or not (staging / CONNECTOR_JAR).is_file() or not built.is_file():
            output = (proc.stdout + proc.stderr).strip().splitlines()[-30:]
            shutil.rmtree(staging, ignore_errors=True)
            raise FlinkEnvError(
                f"Maven could not fetch/build the Flink jars (exit {proc.returncode}): {' '.join(cmd)}\n"
                + "\n".join(output)
            )
        shutil.copy2(built, staging / UDF_JAR)
        (staging / MARKER).write_text(_stamp())
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        if not quiet:
            print(f"flink: {', '.join(p.name for p in jar_paths(target))} ready in {target}", flush=True)
        return target


def check() -> list[str]:
    """What is missing for running a Flink job here (empty list = ready)."""
    problems = []
    if not python_executable().is_file():
        problems.append(f"no Flink venv at {venv_dir()}")
    else:
        try:
            flink_home()
        except FlinkEnvError as exc:
            problems.append(str(exc))
    if not jars_present(lib_dir()):
        problems.append(f"Flink jars missing or stale in {lib_dir()}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.flink_env", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if anything is missing")
    parser.add_argument("--requirements", action="store_true", help="print the pip requirements of .venv-flink")
    args = parser.parse_args(argv)
    if args.requirements:
        print("\n".join(requirements()))
        return 0
    if args.check:
        problems = check()
        for problem in problems:
            print(f"flink: {problem}", file=sys.stderr)
        if problems:
            print("flink: run scripts/setup_flink.sh", file=sys.stderr)
            return 1
    else:
        try:
            ensure_jars()
        except (FlinkEnvError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"apache-flink {FLINK_VERSION}, flink-sql-connector-kafka {KAFKA_CONNECTOR_VERSION}")
    print(f"venv:   {venv_dir()}  (python: {python_executable()})")
    print(f"jars:   {' '.join(str(p) for p in jar_paths())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
