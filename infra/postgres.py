"""An optional local PostgreSQL per profile, for the event store. Not part of the main stack.

``make run`` and ``infra.stack`` never start it: the event store is SQLite unless
``KUAILV_EVENTSTORE`` says ``postgresql://...``. This module gives a real server for that
configuration (and for ``tests/integration/test_eventstore_postgres.py``):

=========  ================  ==============================================
profile    address           event-store URL (``url(profile)``)
=========  ================  ==============================================
dev        127.0.0.1:15432   ``postgresql://kuailv@127.0.0.1:15432/kuailv``
test       127.0.0.1:25432   ``postgresql://kuailv@127.0.0.1:25432/kuailv``
=========  ================  ==============================================

(override: ``KUAILV_POSTGRES_PORT``). The Debian binaries (``apt-get install postgresql``,
done by ``scripts/setup.sh``) live in ``/usr/lib/postgresql/<major>/bin``, not on PATH; the newest
major there is used (or ``KUAILV_PG_BINDIR``). One cluster per profile, initialised once with
``initdb`` (superuser ``kuailv``, trust authentication, TCP on 127.0.0.1 only) in
``<stack_dir>/postgres/data``, socket in ``<stack_dir>/postgres/run``, console output in
``<stack_dir>/logs/postgres.log``, PID file ``<stack_dir>/pids/postgres.pid``. PostgreSQL refuses
to run as root: as root, ``initdb`` and ``postgres`` run as the system user ``postgres`` (created by
the Debian package; ``KUAILV_PG_OS_USER`` picks another) via ``setpriv``, which execs, so the PID we
record is the postmaster's own.

    python -m infra.postgres start  [--profile dev|test]   # idempotent; waits until it accepts queries
    python -m infra.postgres status [--profile ...]        # exit 0 if healthy, else 3
    python -m infra.postgres stop   [--profile ...]        # idempotent; fast shutdown (SIGINT)
    python -m infra.postgres reset  [--profile ...]        # stop, then delete the cluster
    python -m infra.postgres url    [--profile ...]        # print the event-store URL

From Python: ``cluster = ensure_started("test")``; ``cluster.url()``; ``stop("test")``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import settings as settings_mod
from infra import processes

Out = Callable[[str], None]

USER = "kuailv"  # the cluster's superuser (initdb -U); trust auth, no password
DATABASE = "kuailv"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
EXIT_FAILED = 1
EXIT_UNHEALTHY = 3
_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, including the NUL


class PostgresError(RuntimeError):
    """The server could not be prepared or started (the message includes the tail of its log)."""


def _print(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True)
class Cluster:
    profile: str
    port: int
    stack_dir: Path

    @property
    def home(self) -> Path:
        return self.stack_dir / "postgres"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_file(self) -> Path:
        return self.stack_dir / "logs" / "postgres.log"

    @property
    def spec(self) -> processes.ProcessSpec:
        # The postmaster chdirs to its data directory, and keeps its argv[0] (.../bin/postgres);
        # its children retitle themselves ("postgres: checkpointer"), so they never match.
        return processes.ProcessSpec("postgres", self.data_dir, "postgres", self.stack_dir / "pids" / "postgres.pid")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, database: str = DATABASE) -> str:
        """The ``KUAILV_EVENTSTORE`` URL of ``database`` on this cluster."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres", timeout: float = 5.0) -> Any:
        """An autocommit psycopg connection as the superuser."""
        psycopg = _psycopg()
        return psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname=database,
                               connect_timeout=max(2, round(timeout)), autocommit=True)


def cluster(profile: str | None = "test") -> Cluster:
    settings = settings_mod.load(profile)
    return Cluster(settings.profile, settings.postgres_port, settings.stack_dir)


def url(profile: str | None = "test", database: str = DATABASE) -> str:
    return cluster(profile).url(database)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise PostgresError("psycopg not installed: pip install -e '.[dev]' (or 'kuailv-pipeline[postgres]')") from exc
    return psycopg


def _lock(c: Cluster) -> contextlib.AbstractContextManager[None]:
    return processes.locked(c.stack_dir / ".postgres.lock")


# ----------------------------------------------------------------------------- binaries and OS user


def bin_dir() -> Path:
    """Where initdb/postgres are: $KUAILV_PG_BINDIR, the newest /usr/lib/postgresql/<major>/bin, or PATH."""
    override = os.environ.get("KUAILV_PG_BINDIR")
    if override:
        if not (Path(override) / "postgres").is_file():
            raise PostgresError(f"KUAILV_PG_BINDIR={override} has no postgres binary")
        return Path(override)
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found = [d for d in found if (d / "postgres").is_file()]
    if found:
        return max(found, key=lambda d: _major(d.parent.name))
    on_path = shutil.which("initdb")
    if on_path and (Path(on_path).parent / "postgres").is_file():
        return Path(on_path).parent
    raise PostgresError(
        "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH): "
        "apt-get install -y postgresql (or scripts/setup.sh), or set KUAILV_PG_BINDIR"
    )


def _major(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return -1.0


@dataclass(frozen=True)
class _RunAs:
    prefix: list[str]  # argv prefix: [] or [setpriv, --reuid, ...]
    uid: int
    gid: int
    user: str


def _run_as() -> _RunAs:
    """As root: run the server as the system user ``postgres`` (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return _RunAs([], os.geteuid(), os.getegid(), pwd.getpwuid(os.geteuid()).pw_name)
    user = os.environ.get("KUAILV_PG_OS_USER", "postgres")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        entry = _create_system_user(user)
    if entry.pw_uid == 0:
        raise PostgresError(f"KUAILV_PG_OS_USER={user} is root; PostgreSQL refuses to run as root")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise PostgresError("running as root needs setpriv (util-linux) to drop to the postgres user")
    prefix = [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", "--"]
    return _RunAs(prefix, entry.pw_uid, entry.pw_gid, user)


def _create_system_user(user: str) -> pwd.struct_passwd:
    useradd = shutil.which("useradd")
    if useradd is None:
        raise PostgresError(f"no OS user {user!r} to run PostgreSQL as (and no useradd): "
                            "apt-get install -y postgresql creates 'postgres'")
    proc = subprocess.run([useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                           "--shell", "/usr/sbin/nologin", user], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PostgresError(f"useradd {user} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return pwd.getpwnam(user)


def _check_traversable(path: Path, run_as: _RunAs) -> None:
    """The server's user must be able to reach ``path`` (e.g. a project under a 0700 home directory)."""
    if run_as.uid == os.geteuid():
        return
    for parent in reversed(path.parents):
        st = parent.stat()
        mode = st.st_mode
        ok = bool(mode & stat.S_IXOTH) or (st.st_uid == run_as.uid and mode & stat.S_IXUSR) or (
            st.st_gid == run_as.gid and mode & stat.S_IXGRP)
        if not ok:
            raise PostgresError(
                f"user {run_as.user} cannot enter {parent} (mode {stat.filemode(mode)}), so it cannot reach "
                f"{path}: chmod o+x {parent}, or move the state with KUAILV_STATE_DIR"
            )


def _chown_tree(root: Path, run_as: _RunAs) -> None:
    if os.geteuid() != 0:
        return
    for dirpath, _dirs, files in os.walk(root):
        os.chown(dirpath, run_as.uid, run_as.gid)
        for name in files:
            os.lchown(os.path.join(dirpath, name), run_as.uid, run_as.gid)


# ----------------------------------------------------------------------------- prepare


HBA = (
    "# Generated by infra/postgres.py on every start: trust, this cluster's socket and 127.0.0.1 only.\n"
    "# TYPE  DATABASE  USER  ADDRESS       METHOD\n"
    "local   all       all                 trust\n"
    "host    all       all   127.0.0.1/32  trust\n"
)


def _server_env() -> dict[str, str]:
    # PGDATA, PGPORT, PGHOST, ... must not redirect initdb or the server.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _prepare(c: Cluster, bindir: Path, run_as: _RunAs, say: Out) -> None:
    socket_file = c.socket_dir / f".s.PGSQL.{c.port}"
    if len(str(socket_file)) > _MAX_SOCKET_PATH:
        raise PostgresError(f"socket path {socket_file} is longer than {_MAX_SOCKET_PATH} bytes: "
                            "use a shorter KUAILV_STATE_DIR")
    c.home.mkdir(parents=True, exist_ok=True)
    _check_traversable(c.home, run_as)
    c.socket_dir.mkdir(exist_ok=True)
    _chown_tree(c.socket_dir, run_as)
    c.log_file.parent.mkdir(parents=True, exist_ok=True)
    if not (c.data_dir / "PG_VERSION").is_file():
        if c.data_dir.exists() and any(c.data_dir.iterdir()):
            raise PostgresError(f"{c.data_dir} is not empty but holds no cluster (no PG_VERSION): "
                                f"python -m infra.postgres reset --profile {c.profile}")
        c.data_dir.mkdir(mode=0o700, exist_ok=True)
        _chown_tree(c.data_dir, run_as)
        cmd = [*run_as.prefix, str(bindir / "initdb"), "-D", str(c.data_dir), "-U", USER, "--auth=trust",
               "-E", "UTF8", "--no-locale"]
        say(f"postgres: initdb {c.data_dir} ({bindir.parent.name}, superuser {USER}, as OS user {run_as.user}) ...")
        t0 = time.monotonic()
        with open(c.log_file, "ab") as log:
            log.write(f"\n----- {processes.LAUNCH_MARKER} postgres initdb: {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.run(cmd, cwd=c.home, stdout=log, stderr=subprocess.STDOUT, env=_server_env(),
                                  timeout=120)
        if proc.returncode != 0:
            raise PostgresError(_failure(c, f"initdb failed (exit {proc.returncode})"))
        say(f"postgres: initdb done in {time.monotonic() - t0:.1f}s")
    elif os.geteuid() == 0 and c.data_dir.stat().st_uid != run_as.uid:
        say(f"postgres: chown -R {run_as.user} {c.data_dir}")
        _chown_tree(c.data_dir, run_as)
    hba = c.data_dir / "pg_hba.conf"
    hba.write_text(HBA)
    if os.geteuid() == 0:
        os.chown(hba, run_as.uid, run_as.gid)


def _argv(c: Cluster, bindir: Path, run_as: _RunAs) -> list[str]:
    return [
        *run_as.prefix,
        str(bindir / "postgres"),
        "-D", str(c.data_dir),
        "-k", str(c.socket_dir),
        "-h", "127.0.0.1",
        "-p", str(c.port),
        "-c", "logging_collector=off",  # stderr -> our log file
        "-c", "log_destination=stderr",
        "-c", "max_connections=100",
        "-c", "shared_buffers=64MB",
    ]


# ----------------------------------------------------------------------------- health


def healthy(c: Cluster, timeout: float = 2.0) -> bool:
    """The server accepts a connection as the superuser and answers a query."""
    if not processes.port_open(c.port):
        return False
    psycopg = _psycopg()
    try:
        with c.connect("postgres", timeout) as conn:
            conn.execute("SELECT 1").fetchone()
    except psycopg.Error:
        return False
    return True


def create_database(c: Cluster, name: str) -> str:
    """Create ``name`` unless it exists; returns its event-store URL."""
    from psycopg import sql

    with c.connect("postgres") as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return c.url(name)


def drop_database(c: Cluster, name: str) -> None:
    """Drop ``name`` if it exists, disconnecting its sessions (PostgreSQL 13+)."""
    from psycopg import sql

    with c.connect("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ----------------------------------------------------------------------------- start


def _failure(c: Cluster, reason: str) -> str:
    lines = processes.tail(c.log_file, 30)
    body = "\n".join(f"    {line}" for line in lines) if lines else "    (log is empty)"
    return f"postgres FAILED: {reason}\n  last lines of {c.log_file}:\n{body}\n  log: {c.log_file}"


def ensure_started(profile: str | None = "test", *, out: Out | None = _print) -> Cluster:
    """Start the profile's PostgreSQL unless it runs, wait until it answers, create the ``kuailv`` database.
    Idempotent, serialised per profile with a file lock. Raises PostgresError (with the log tail)."""
    say = out or (lambda _line: None)
    c = cluster(profile)
    started = time.monotonic()
    with _lock(c):
        pid = processes.find_running(c.spec)
        launched = False
        if pid is not None:
            say(f"postgres: already running on {c.address} (pid {pid})")
        else:
            c.spec.pid_file.unlink(missing_ok=True)  # stale, if any
            if processes.port_open(c.port):
                raise PostgresError(f"postgres FAILED: port {c.port} in use by a process that is not this "
                                    f"profile's postgres (a system cluster? KUAILV_POSTGRES_PORT moves ours)")
            bindir = bin_dir()
            run_as = _run_as()
            _prepare(c, bindir, run_as, say)
            pid = processes.spawn(c.spec, _argv(c, bindir, run_as), c.log_file, env=_server_env())
            launched = True
            say(f"postgres: starting on {c.address} (pid {pid}) ...")
        t0 = time.monotonic()
        while not healthy(c, timeout=2.0):
            if not processes.still_running(pid, c.spec):
                processes.reap(pid)
                c.spec.pid_file.unlink(missing_ok=True)
                raise PostgresError(_failure(c, f"process {pid} exited during start-up"))
            if time.monotonic() > t0 + READY_TIMEOUT:
                raise PostgresError(_failure(c, f"not ready after {READY_TIMEOUT:.0f}s (pid {pid} still running; "
                                                f"python -m infra.postgres stop --profile {c.profile})"))
            time.sleep(0.1)
        create_database(c, DATABASE)
    if launched:
        say(f"postgres {c.profile}: ready in {time.monotonic() - started:.1f}s, {c.url()}")
    return c


# ----------------------------------------------------------------------------- stop / reset / status


def _wait_gone(pid: int, c: Cluster, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while processes.still_running(pid, c.spec):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop(profile: str | None = "test", *, out: Out | None = _print) -> None:
    """Fast shutdown (SIGINT: open transactions roll back, clients are disconnected, then a checkpoint);
    SIGQUIT after STOP_TIMEOUT, then processes.stop's SIGTERM/SIGKILL. Idempotent; only signals our process."""
    say = out or (lambda _line: None)
    c = cluster(profile)
    with _lock(c):
        pid = processes.find_running(c.spec)
        if pid is None:
            say(processes.describe_stop("postgres", processes.stop(c.spec)))  # removes a stale PID file
            return
        t0 = time.monotonic()
        outcome = "stopped"
        for sig, wait in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGQUIT, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if _wait_gone(pid, c, wait):
                break
            outcome = "killed"
        else:
            processes.stop(c.spec, timeout=5.0)
        processes.reap(pid)
        c.spec.pid_file.unlink(missing_ok=True)
        say(f"postgres: {outcome} (pid {pid}) in {time.monotonic() - t0:.1f}s")


def reset(profile: str | None = "test", *, out: Out | None = _print) -> None:
    """Stop, then delete the profile's cluster (``<stack_dir>/postgres``) and its log."""
    say = out or (lambda _line: None)
    c = cluster(profile)
    stop(profile, out=out)
    with _lock(c):
        shutil.rmtree(c.home, ignore_errors=True)
        c.log_file.unlink(missing_ok=True)
    say(f"postgres: deleted {c.home}")


@dataclass(frozen=True)
class Status:
    state: str  # healthy | running (not answering) | stopped | healthy (not ours!)
    pid: int | None
    address: str
    log_file: str


def status(profile: str | None = "test") -> Status:
    c = cluster(profile)
    pid = processes.find_running(c.spec)
    if pid is None:
        state = "healthy (not ours!)" if healthy(c) else "stopped"
    else:
        state = "healthy" if healthy(c) else "running"
    return Status(state, pid, c.address, str(c.log_file))


def is_healthy(profile: str | None = "test") -> bool:
    return status(profile).state == "healthy"


@contextlib.contextmanager
def temporary_database(profile: str | None = "test", prefix: str = "kuailv_it") -> Iterator[str]:
    """A fresh database on the (running) cluster for one test; yields its URL, drops it afterwards."""
    import uuid

    c = cluster(profile)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    db_url = create_database(c, name)
    try:
        yield db_url
    finally:
        drop_database(c, name)


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.postgres", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status", "reset", "url"])
    parser.add_argument("--profile", default=None, help="dev or test (default: $KUAILV_PROFILE or dev)")
    args = parser.parse_args(argv)
    try:
        profile = settings_mod.load(args.profile).profile
    except ValueError as exc:
        parser.error(str(exc))
    try:
        if args.command == "start":
            ensure_started(profile)
        elif args.command == "stop":
            stop(profile)
        elif args.command == "reset":
            reset(profile)
        elif args.command == "url":
            _print(url(profile))
        else:
            s = status(profile)
            _print(f"postgres  {s.state}  pid {s.pid or '-'}  {s.address}  {url(profile)}  log {s.log_file}")
            return 0 if s.state == "healthy" else EXIT_UNHEALTHY
    except PostgresError as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
