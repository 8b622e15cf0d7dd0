"""Fetch the Apache Kafka broker jars from Maven Central, once.

Kafka has no Debian package. ``infra/kafka/pom.xml`` names the broker
(``kafka_2.13``) and its logging binding; Maven copies them with every runtime
dependency into ``<state_dir>/lib/kafka/``, shared by all profiles. A marker file
holding the Kafka version and a hash of the pom makes this a no-op once done;
editing the pom fetches again.

    python -m infra.kafka_jars          # fetch if needed, print the directory
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from config import settings as settings_mod
from infra import processes

KAFKA_VERSION = "3.9.1"
POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
MARKER = ".complete"


class KafkaJarsError(RuntimeError):
    """Maven is missing or could not fetch the jars."""


def lib_dir(state_dir: Path | None = None) -> Path:
    """Where the jars live: ``<state_dir>/lib/kafka`` (shared by the dev and test profiles)."""
    state_dir = state_dir if state_dir is not None else settings_mod.load().state_dir
    return state_dir / "lib" / "kafka"


def _stamp() -> str:
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    return f"kafka {KAFKA_VERSION} pom-sha256 {digest}\n"


def jars_present(target: Path) -> bool:
    marker = target / MARKER
    return marker.is_file() and marker.read_text() == _stamp() and any(target.glob("kafka_2.13-*.jar"))


def ensure_jars(target: Path | None = None, *, quiet: bool = False) -> Path:
    """Make sure the broker jars are in ``target``; fetch them with Maven if not. Returns ``target``."""
    target = target if target is not None else lib_dir()
    if jars_present(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One fetch at a time (two pytest sessions may start at once).
    with processes.locked(target.parent / ".kafka-jars.lock"):
        if jars_present(target):
            return target
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaJarsError("mvn not found: install Maven (apt-get install -y maven) or run scripts/setup.sh")
        if not quiet:
            print(f"kafka: fetching Apache Kafka {KAFKA_VERSION} jars with Maven into {target} ...", flush=True)
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={staging}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            output = (proc.stdout + proc.stderr).strip().splitlines()[-30:]
            shutil.rmtree(staging, ignore_errors=True)
            raise KafkaJarsError(
                f"Maven could not fetch the Kafka jars (exit {proc.returncode}): {' '.join(cmd)}\n" + "\n".join(output)
            )
        (staging / MARKER).write_text(_stamp())
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        if not quiet:
            count = len(list(target.glob("*.jar")))
            print(f"kafka: {count} jars in {target}", flush=True)
        return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.kafka_jars", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="target directory (default: <state_dir>/lib/kafka)")
    args = parser.parse_args(argv)
    try:
        target = ensure_jars(args.dir)
    except (KafkaJarsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"kafka {KAFKA_VERSION} jars ready in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
