"""A local standalone Flink cluster per profile, from the Flink inside ``.venv-flink``'s pyflink.

One JobManager (REST API and web UI) and one TaskManager with two slots, both bound to
127.0.0.1, run in the foreground as background processes we own (PID files, recognised by their
working directory and main class, like the rest of ``infra``):

=========  ==================  ==============
profile    REST / web UI       JobManager RPC
=========  ==================  ==============
dev        127.0.0.1:18081     18123
test       127.0.0.1:28081     28123
=========  ==================  ==============

(override: ``KUAILV_FLINK_REST_PORT``, ``KUAILV_FLINK_RPC_PORT``). Everything lives in
``<state_dir>/<profile>/flink/``: ``conf/`` (rendered from ``infra/flink/conf/``; the
``FLINK_CONF_DIR`` of the cluster and of ``flink run``), ``log/`` (Flink's own logs, shown in the
web UI), ``checkpoints/``, ``savepoints/``. Console output: ``<stack_dir>/logs/flink-*.log``.

    python -m infra.flink_cluster start  [--profile dev|test]   # idempotent; waits for a TaskManager
    python -m infra.flink_cluster status [--profile ...]        # exit 0 if healthy, else 3
    python -m infra.flink_cluster stop   [--profile ...]        # idempotent; running jobs die with it
    python -m infra.flink_cluster flink  [--profile ...] -- run -d -py job.py ...   # the flink CLI

From Python: ``info = ensure_started("test")``; ``info.rest_url``; ``stop("test")``.
Runs from ``.venv`` or ``.venv-flink`` (stdlib only); needs ``scripts/setup_flink.sh`` once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from config import settings as settings_mod
from infra import flink_env, processes

Out = Callable[[str], None]

_PORTS = {"dev": {"rest": 18081, "rpc": 18123}, "test": {"rest": 28081, "rpc": 28123}}
READY_TIMEOUT = 90.0
EXIT_FAILED = 1
EXIT_UNHEALTHY = 3


class FlinkClusterError(RuntimeError):
    """The cluster could not start (the message includes the tail of the failing log)."""


def _print(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True)
class Role:
    name: str  # jobmanager | taskmanager
    script: str  # bin/<script> start-foreground
    main_class: str  # an exact argv element of the JVM: how we recognise the process


ROLES = (
    Role("jobmanager", "jobmanager.sh", "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"),
    Role("taskmanager", "taskmanager.sh", "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"),
)


@dataclass(frozen=True)
class ClusterInfo:
    profile: str
    rest_port: int
    rpc_port: int
    home: Path  # <state_dir>/<profile>/flink
    flink_home: Path | None  # pyflink inside .venv-flink (None if not installed)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def checkpoint_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def savepoint_dir(self) -> Path:
        return self.home / "savepoints"

    @property
    def flink_bin(self) -> Path:
        if self.flink_home is None:
            raise FlinkClusterError(f"no Flink in {flink_env.venv_dir()}: run scripts/setup_flink.sh")
        return self.flink_home / "bin" / "flink"

    def spec(self, role: Role) -> processes.ProcessSpec:
        stack_dir = self.home.parent
        return processes.ProcessSpec(
            f"flink-{role.name}", self.home / role.name, role.main_class, stack_dir / "pids" / f"flink-{role.name}.pid"
        )

    def console_log(self, role: Role) -> Path:
        return self.home.parent / "logs" / f"flink-{role.name}.log"

    def env(self) -> dict[str, str]:
        """Environment for Flink's scripts and the ``flink`` CLI."""
        env = dict(os.environ)
        env["FLINK_CONF_DIR"] = str(self.conf_dir)
        env["FLINK_LOG_DIR"] = str(self.log_dir)
        env.pop("FLINK_HOME", None)  # the scripts find their own distribution
        venv_bin = str(flink_env.venv_dir() / "bin")
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")  # `python` = .venv-flink's, just in case
        return env


def info(profile: str | None = "test") -> ClusterInfo:
    settings = settings_mod.load(profile)
    ports = _PORTS[settings.profile]
    try:
        home: Path | None = flink_env.flink_home()
    except flink_env.FlinkEnvError:
        home = None
    return ClusterInfo(
        profile=settings.profile,
        rest_port=int(os.environ.get("KUAILV_FLINK_REST_PORT") or ports["rest"]),
        rpc_port=int(os.environ.get("KUAILV_FLINK_RPC_PORT") or ports["rpc"]),
        home=settings.stack_dir / "flink",
        flink_home=home,
    )


# ----------------------------------------------------------------------------- REST


def rest_get(cluster: ClusterInfo, path: str, timeout: float = 2.0) -> dict | None:
    """GET ``path`` of the REST API; None if nothing answers (or not with JSON)."""
    try:
        with urllib.request.urlopen(cluster.rest_url + path, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None


def _overview(cluster: ClusterInfo, timeout: float = 2.0) -> dict | None:
    body = rest_get(cluster, "/overview", timeout)
    return body if isinstance(body, dict) and "taskmanagers" in body else None


def healthy(cluster: ClusterInfo, timeout: float = 2.0) -> bool:
    """The REST API answers and at least one TaskManager with its slots is registered."""
    overview = _overview(cluster, timeout)
    return overview is not None and overview["taskmanagers"] >= 1 and overview.get("slots-total", 0) >= 1


def jobs(cluster: ClusterInfo) -> list[dict]:
    """``/jobs/overview``: [{"jid", "name", "state", ...}]; empty if the cluster does not answer."""
    body = rest_get(cluster, "/jobs/overview")
    return list(body.get("jobs", [])) if isinstance(body, dict) else []


# ----------------------------------------------------------------------------- start


def _render_conf(cluster: ClusterInfo) -> None:
    python = flink_env.python_executable()
    values = {
        "log_dir": str(cluster.log_dir),
        "pid_dir": str(cluster.home / "pid"),
        "rpc_port": str(cluster.rpc_port),
        "rest_port": str(cluster.rest_port),
        "checkpoint_dir": str(cluster.checkpoint_dir),
        "savepoint_dir": str(cluster.savepoint_dir),
        "python": str(python),
        "pythonpath": flink_env.pythonpath(),
    }
    cluster.conf_dir.mkdir(parents=True, exist_ok=True)
    for directory in (cluster.log_dir, cluster.checkpoint_dir, cluster.savepoint_dir, cluster.home / "pid"):
        directory.mkdir(parents=True, exist_ok=True)
    template = string.Template((flink_env.CONF_TEMPLATES / "config.yaml").read_text())
    (cluster.conf_dir / "config.yaml").write_text(template.substitute(values))
    for name in ("log4j-console.properties", "log4j-cli.properties"):
        shutil.copyfile(flink_env.CONF_TEMPLATES / name, cluster.conf_dir / name)
    # The CLI and scripts also look for these; keep Flink's defaults.
    (cluster.conf_dir / "masters").write_text(f"127.0.0.1:{cluster.rest_port}\n")
    (cluster.conf_dir / "workers").write_text("127.0.0.1\n")


def _failure(cluster: ClusterInfo, role: Role, reason: str) -> str:
    lines = processes.tail(cluster.console_log(role), 30)
    body = "\n".join(f"    {line}" for line in lines) if lines else "    (log is empty)"
    return (
        f"flink-{role.name} FAILED: {reason}\n  last lines of {cluster.console_log(role)}:\n{body}\n"
        f"  Flink's own logs: {cluster.log_dir}"
    )


def _spawn(cluster: ClusterInfo, role: Role) -> int:
    spec = cluster.spec(role)
    spec.pid_file.unlink(missing_ok=True)
    script = cluster.flink_bin.parent / role.script
    return processes.spawn(
        spec, ["bash", str(script), "start-foreground"], cluster.console_log(role), env=cluster.env()
    )


def ensure_started(profile: str | None = "test", *, out: Out | None = _print) -> ClusterInfo:
    """Start whatever of the profile's cluster is not running and wait for a registered TaskManager.
    Idempotent, serialised per profile with a file lock. Raises FlinkClusterError."""
    say = out or (lambda _line: None)
    cluster = info(profile)
    problems = flink_env.check()
    if problems and cluster.flink_home is None:
        raise FlinkClusterError("; ".join(problems) + ": run scripts/setup_flink.sh")
    if shutil.which("java") is None:
        raise FlinkClusterError("java not found on PATH: install a JDK 17 (scripts/setup.sh)")
    started = time.monotonic()
    launched: dict[str, tuple[Role, int]] = {}
    with processes.locked(cluster.home.parent / ".flink.lock"):
        _render_conf(cluster)
        for role in ROLES:
            spec = cluster.spec(role)
            pid = processes.find_running(spec)
            if pid is not None:
                say(f"flink-{role.name}: already running (pid {pid})")
                continue
            if role.name == "jobmanager":
                busy = [p for p in (cluster.rest_port, cluster.rpc_port) if processes.port_open(p)]
                if busy:
                    raise FlinkClusterError(
                        f"flink-jobmanager FAILED: port {busy} in use by a process that is not this profile's Flink"
                    )
            pid = _spawn(cluster, role)
            launched[role.name] = (role, pid)
            say(f"flink-{role.name}: starting (pid {pid}) ...")
        deadline = time.monotonic() + READY_TIMEOUT
        while not healthy(cluster, timeout=1.0):
            for role, pid in launched.values():
                if not processes.still_running(pid, cluster.spec(role)):
                    processes.reap(pid)
                    cluster.spec(role).pid_file.unlink(missing_ok=True)
                    raise FlinkClusterError(_failure(cluster, role, f"process {pid} exited during start-up"))
            if time.monotonic() > deadline:
                role = ROLES[0] if _overview(cluster) is None else ROLES[1]
                raise FlinkClusterError(
                    _failure(
                        cluster,
                        role,
                        f"no TaskManager registered after {READY_TIMEOUT:.0f}s "
                        f"(python -m infra.flink_cluster stop --profile {cluster.profile})",
                    )
                )
            time.sleep(0.3)
    overview = _overview(cluster) or {}
    what = f"{overview.get('taskmanagers')} TaskManager(s), {overview.get('slots-total')} slots"
    if launched:
        say(f"flink {cluster.profile}: up in {time.monotonic() - started:.1f}s, {what}, web UI {cluster.rest_url}")
    else:
        say(f"flink {cluster.profile}: already up ({what}), web UI {cluster.rest_url}")
    return cluster


# ----------------------------------------------------------------------------- stop / status


def stop(profile: str | None = "test", *, out: Out | None = _print) -> None:
    """Stop TaskManager then JobManager. Idempotent; only ever signals our own processes.
    Running jobs are lost (no HA): stop them with a savepoint first (``flink stop``)."""
    say = out or (lambda _line: None)
    cluster = info(profile)
    with processes.locked(cluster.home.parent / ".flink.lock"):
        for role in reversed(ROLES):
            say(processes.describe_stop(f"flink-{role.name}", processes.stop(cluster.spec(role), timeout=30.0)))


@dataclass(frozen=True)
class RoleStatus:
    name: str
    state: str  # healthy | running | stopped
    pid: int | None


def status(profile: str | None = "test") -> tuple[ClusterInfo, list[RoleStatus], dict | None]:
    cluster = info(profile)
    overview = _overview(cluster)
    rows = []
    for role in ROLES:
        pid = processes.find_running(cluster.spec(role))
        if pid is None:
            state = "stopped"
        elif role.name == "jobmanager":
            state = "healthy" if overview is not None else "running"
        else:
            state = "healthy" if overview is not None and overview["taskmanagers"] >= 1 else "running"
        rows.append(RoleStatus(role.name, state, pid))
    return cluster, rows, overview


def is_healthy(profile: str | None = "test") -> bool:
    _, rows, _ = status(profile)
    return all(r.state == "healthy" for r in rows)


def run_cli(profile: str | None, args: Sequence[str]) -> int:
    """Run ``bin/flink <args>`` against the profile's cluster (FLINK_CONF_DIR = its conf)."""
    cluster = info(profile)
    if not (cluster.conf_dir / "config.yaml").is_file():
        _render_conf(cluster)
    cmd = ["bash", str(cluster.flink_bin), *args]
    return subprocess.call(cmd, env=cluster.env())


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.flink_cluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status", "flink"])
    parser.add_argument("--profile", default=None, help="dev or test (default: $KUAILV_PROFILE or dev)")
    argv = list(sys.argv[1:] if argv is None else argv)
    cli_args: list[str] = []
    if "--" in argv:  # `flink ... -- <flink CLI arguments>`
        cut = argv.index("--")
        argv, cli_args = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    if cli_args and args.command != "flink":
        parser.error("arguments after -- are only for the `flink` command")
    try:
        profile = settings_mod.load(args.profile).profile
    except ValueError as exc:
        parser.error(str(exc))
    try:
        if args.command == "start":
            ensure_started(profile)
        elif args.command == "stop":
            stop(profile)
        elif args.command == "flink":
            return run_cli(profile, cli_args)
        else:
            cluster, rows, overview = status(profile)
            for row in rows:
                _print(f"flink-{row.name:<12} {row.state:<8} pid {row.pid or '-'}")
            _print(f"web UI / REST: {cluster.rest_url}   conf: {cluster.conf_dir}   logs: {cluster.log_dir}")
            if overview is not None:
                _print(
                    f"taskmanagers {overview['taskmanagers']}, slots {overview.get('slots-available')}/"
                    f"{overview.get('slots-total')} free, jobs running {overview.get('jobs-running')}"
                )
                for job in jobs(cluster):
                    _print(f"  job {job.get('jid')}  {job.get('state'):<10} {job.get('name')}")
            return 0 if all(r.state == "healthy" for r in rows) else EXIT_UNHEALTHY
    except (FlinkClusterError, flink_env.FlinkEnvError) as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
