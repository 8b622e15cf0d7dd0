"""Background processes we own: launch detached, remember by PID file, stop safely.

A process counts as *ours* only if ``/proc/<pid>`` shows both its working
directory (each service runs in its own data directory, which is unique per
profile) and the expected program token in its command line. A stale PID file,
or a PID the kernel has since handed to someone else, is never signalled.
Linux only (reads ``/proc``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

LAUNCH_MARKER = "kuailv infra: starting"  # written to the log before each launch; tail() starts there
MAX_LOG_BYTES = 50 * 1024 * 1024  # checked at launch: a bigger log is moved to <name>.log.1


@dataclass(frozen=True)
class ProcessSpec:
    """How to recognise one service's process."""

    name: str
    cwd: Path  # the process runs here; part of its identity
    token: str  # an exact argv element (e.g. ``kafka.Kafka``) or a program basename (``redis-server``)
    pid_file: Path


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part for part in raw.decode(errors="replace").split("\0") if part]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # "pid (comm) S ...": the state follows the last ')'.
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


# Popen objects of the services this Python process launched (e.g. from a pytest fixture): kept so they
# are not garbage-collected while running (ResourceWarning) and so stop() can reap them (no zombies).
_children: dict[int, subprocess.Popen[bytes]] = {}


def reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child (otherwise it would linger as a zombie)."""
    child = _children.pop(pid, None)
    if child is not None:
        child.poll()


def matches(pid: int, spec: ProcessSpec) -> bool:
    """True if ``pid`` is alive and is the process ``spec`` describes (a zombie is not alive)."""
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))  # fails for zombies and other users' processes
    except OSError:
        return False
    if cwd != spec.cwd.resolve():
        return False
    args = _cmdline(pid)
    # Redis rewrites its title to "redis-server 127.0.0.1:port", so also match the first word's basename.
    first = args[0].split()[0] if args else ""
    if spec.token not in args and os.path.basename(first) != spec.token:
        return False
    return not _is_zombie(pid)


def still_running(pid: int, spec: ProcessSpec) -> bool:
    """Liveness of a process we are waiting on. For a child of this Python process, ask the kernel via
    ``poll()``: right after ``spawn`` returns, exec may not have finished publishing the new command
    line in /proc, so ``matches`` can be briefly False for a healthy process."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    return matches(pid, spec)


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def find_running(spec: ProcessSpec) -> int | None:
    """PID of our running process: from the PID file, else by scanning /proc (a lost PID file)."""
    pid = read_pid(spec.pid_file)
    if pid is not None and matches(pid, spec):
        return pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and matches(int(entry.name), spec):
            return int(entry.name)
    return None


def spawn(spec: ProcessSpec, argv: Sequence[str], log_file: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` detached (own session, survives the launching shell); output appends to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    if log_file.exists() and log_file.stat().st_size > MAX_LOG_BYTES:
        log_file.replace(log_file.with_name(log_file.name + ".1"))  # keep one old log
    spec.pid_file.parent.mkdir(parents=True, exist_ok=True)
    spec.cwd.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"\n----- {stamp} {LAUNCH_MARKER} {spec.name}: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            cwd=spec.cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    _children[proc.pid] = proc
    spec.pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


@dataclass(frozen=True)
class StopResult:
    pid: int | None
    outcome: str  # "not running" | "stopped" | "killed" | "stale pid file removed"
    seconds: float = 0.0


def describe_stop(name: str, result: StopResult) -> str:
    """The one-line report of a ``stop`` every infra module prints."""
    if result.outcome in ("stopped", "killed"):
        return f"{name}: {result.outcome} (pid {result.pid}) in {result.seconds:.1f}s"
    if result.outcome == "stale pid file removed":
        return f"{name}: not running (removed stale pid file for pid {result.pid})"
    return f"{name}: not running"


def stop(spec: ProcessSpec, timeout: float = 20.0) -> StopResult:
    """SIGTERM our process, wait up to ``timeout`` s, then SIGKILL. Idempotent; never signals a stranger."""
    recorded = read_pid(spec.pid_file)
    pid = find_running(spec)
    if pid is None:
        if spec.pid_file.exists():
            spec.pid_file.unlink(missing_ok=True)
            return StopResult(recorded, "stale pid file removed")
        return StopResult(None, "not running")
    started = time.monotonic()
    outcome = "stopped"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, spec, timeout):
        outcome = "killed"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, spec, 5.0)
    reap(pid)
    spec.pid_file.unlink(missing_ok=True)
    return StopResult(pid, outcome, time.monotonic() - started)


def _wait_gone(pid: int, spec: ProcessSpec, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not still_running(pid, spec):
            return True
        time.sleep(0.1)
    return not still_running(pid, spec)


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def tail(path: Path, lines: int = 30) -> list[str]:
    """The last ``lines`` lines of a log, starting no earlier than our most recent launch marker."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    starts = [i for i, line in enumerate(text) if LAUNCH_MARKER in line]
    if starts:
        text = text[starts[-1] :]
    return text[-lines:]


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Serialise start/stop/reset of one profile across processes (e.g. two pytest runs)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
