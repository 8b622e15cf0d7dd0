"""infra.processes without a stack: which PIDs count as ours, safe stop, PID files, log tail.

Every process here is a ``sleep`` this test starts itself (in its own tmp directory) and kills
in a ``finally``; nothing touches the network or the dev/test stacks.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import processes
from infra.processes import LAUNCH_MARKER, ProcessSpec

SLEEP = "/bin/sleep"


def _spec(tmp_path: Path, name: str = "svc", token: str = "sleep") -> ProcessSpec:
    return ProcessSpec(name, tmp_path / name, token, tmp_path / "pids" / f"{name}.pid")


def _wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _exec_done(pid: int, program: str = "sleep") -> bool:
    """/proc shows the new program (exec finished): only then do cwd + cmdline identify it."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(args) and os.path.basename(args[0].decode()) == program


@contextlib.contextmanager
def _stranger(cwd: Path, argv0: str = SLEEP) -> Iterator[subprocess.Popen[bytes]]:
    """A ``sleep 60`` (shown as ``argv0``) that is NOT the service; we own it, so we may kill it."""
    cwd.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([argv0, "60"], executable=SLEEP, cwd=cwd, stdin=subprocess.DEVNULL)
    try:
        assert _wait_until(lambda: Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(argv0.encode()))
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def _spawned(spec: ProcessSpec, argv: list[str]) -> Iterator[int]:
    pid = processes.spawn(spec, argv, spec.cwd.parent / "logs" / f"{spec.name}.log")
    try:
        assert _wait_until(lambda: _exec_done(pid))
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        processes.reap(pid)


# ----------------------------------------------------------------------------- identity


def test_own_process_matches_and_is_found_from_its_pid_file(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    with _spawned(spec, [SLEEP, "60"]) as pid:
        assert processes.read_pid(spec.pid_file) == pid
        assert processes.matches(pid, spec)
        assert processes.find_running(spec) == pid
        assert processes.still_running(pid, spec)


def test_lost_pid_file_is_recovered_by_scanning_proc(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    with _spawned(spec, [SLEEP, "60"]) as pid:
        spec.pid_file.unlink()
        assert processes.find_running(spec) == pid


def test_same_cwd_but_other_program_is_not_ours(tmp_path: Path) -> None:
    spec = _spec(tmp_path, token="redis-server")
    with _stranger(spec.cwd) as proc:  # a sleep in the service's own data directory
        assert not processes.matches(proc.pid, spec)
        spec.pid_file.parent.mkdir(parents=True)
        spec.pid_file.write_text(f"{proc.pid}\n")
        assert processes.find_running(spec) is None


def test_same_program_in_another_directory_is_not_ours(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    with _stranger(tmp_path / "elsewhere") as proc:  # a sleep, but not in the service's directory
        assert not processes.matches(proc.pid, spec)
        spec.pid_file.parent.mkdir(parents=True)
        spec.pid_file.write_text(f"{proc.pid}\n")
        assert processes.find_running(spec) is None


def test_token_matches_the_program_basename_even_with_a_rewritten_title(tmp_path: Path) -> None:
    # Redis rewrites argv to "redis-server 127.0.0.1:port" (one element): the first word's basename counts.
    spec = _spec(tmp_path, token="sleep")
    with _stranger(spec.cwd, argv0=f"{SLEEP} 127.0.0.1:1234") as proc:
        assert processes.matches(proc.pid, spec)
    other = _spec(tmp_path, token="127.0.0.1:1234")  # ... but only the program, not any word of the title
    with _stranger(other.cwd, argv0=f"{SLEEP} 127.0.0.1:1234") as proc:
        assert not processes.matches(proc.pid, other)


def test_dead_and_zombie_processes_are_not_running(tmp_path: Path) -> None:
    spec = _spec(tmp_path, token="true")
    spec.cwd.mkdir(parents=True)
    proc = subprocess.Popen(["true"], cwd=spec.cwd)
    try:
        # Not waited for: it stays a zombie of this process until wait().
        assert _wait_until(lambda: processes._is_zombie(proc.pid))
        assert not processes.matches(proc.pid, spec)
    finally:
        proc.wait(5)
    assert not processes.matches(proc.pid, spec)  # reaped: /proc/<pid> is gone


@pytest.mark.parametrize("content", ["", "not a pid\n", "-1\n", "0\n", "99999999\n"])
def test_garbage_pid_file_is_treated_as_not_running(tmp_path: Path, content: str) -> None:
    spec = _spec(tmp_path, token="no-such-program-kuailv")
    spec.pid_file.parent.mkdir(parents=True)
    spec.pid_file.write_text(content)
    assert processes.find_running(spec) is None
    result = processes.stop(spec)
    assert result.outcome == "stale pid file removed"
    assert not spec.pid_file.exists()


# ----------------------------------------------------------------------------- stop


def test_stop_is_idempotent(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    with _spawned(spec, [SLEEP, "60"]) as pid:
        first = processes.stop(spec, timeout=5.0)
        assert (first.pid, first.outcome) == (pid, "stopped")
        assert not Path(f"/proc/{pid}").exists()  # gone, and reaped (no zombie left)
        assert not spec.pid_file.exists()
        second = processes.stop(spec, timeout=5.0)
        assert (second.pid, second.outcome) == (None, "not running")


def test_stop_never_signals_the_stranger_a_stale_pid_file_names(tmp_path: Path) -> None:
    spec = _spec(tmp_path, token="redis-server")
    with _stranger(spec.cwd) as proc:
        spec.pid_file.parent.mkdir(parents=True)
        spec.pid_file.write_text(f"{proc.pid}\n")
        result = processes.stop(spec, timeout=1.0)
        assert (result.pid, result.outcome) == (proc.pid, "stale pid file removed")
        assert not spec.pid_file.exists()
        time.sleep(0.2)
        assert proc.poll() is None, "stop() signalled a process that is not ours"


def test_stop_stops_ours_found_by_scan_not_the_stranger_in_the_pid_file(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    with _spawned(spec, [SLEEP, "60"]) as pid, _stranger(tmp_path / "elsewhere") as proc:
        spec.pid_file.write_text(f"{proc.pid}\n")  # the PID file lies; our process still runs
        result = processes.stop(spec, timeout=5.0)
        assert (result.pid, result.outcome) == (pid, "stopped")
        assert proc.poll() is None
        assert not spec.pid_file.exists()


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    # An ignored signal stays ignored across exec: this "sleep" survives SIGTERM.
    with _spawned(spec, ["/bin/sh", "-c", f"trap '' TERM; exec {SLEEP} 60"]) as pid:
        result = processes.stop(spec, timeout=0.5)
        assert (result.pid, result.outcome) == (pid, "killed")
        assert 0.5 <= result.seconds < 5.0
        assert not Path(f"/proc/{pid}").exists()


# ----------------------------------------------------------------------------- spawn, logs, lock


def test_spawn_appends_a_launch_marker_and_output_to_the_log(tmp_path: Path) -> None:
    spec = _spec(tmp_path, token="sh")
    log = tmp_path / "logs" / "svc.log"
    log.parent.mkdir(parents=True)
    log.write_text("old line\n")
    pid = processes.spawn(spec, ["/bin/sh", "-c", "echo hello from svc; echo oops >&2"], log)
    try:
        assert _wait_until(lambda: not processes.still_running(pid, spec))
    finally:
        processes.reap(pid)
    text = log.read_text()
    assert text.startswith("old line\n")
    assert LAUNCH_MARKER in text and "hello from svc" in text and "oops" in text
    assert processes.tail(log) == [line for line in text.splitlines() if line][-3:]
    assert processes.read_pid(spec.pid_file) == pid


def test_spawn_rotates_an_oversized_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "MAX_LOG_BYTES", 100)
    spec = _spec(tmp_path, token="true")
    log = tmp_path / "logs" / "svc.log"
    log.parent.mkdir(parents=True)
    log.write_text("x" * 200)
    pid = processes.spawn(spec, ["true"], log)
    assert _wait_until(lambda: not processes.still_running(pid, spec))
    processes.reap(pid)
    assert (tmp_path / "logs" / "svc.log.1").read_text() == "x" * 200
    assert "x" * 200 not in log.read_text()


def test_tail_starts_at_the_latest_launch_and_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text(
        "ancient\n"
        f"----- 1 {LAUNCH_MARKER} svc: a\n"
        "first run\n"
        f"----- 2 {LAUNCH_MARKER} svc: b\n" + "".join(f"line {i}\n" for i in range(50))
    )
    assert processes.tail(log, 30) == [f"line {i}" for i in range(20, 50)]
    assert processes.tail(log, 100)[0] == f"----- 2 {LAUNCH_MARKER} svc: b"
    assert processes.tail(tmp_path / "missing.log") == []


def test_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    lock_file = tmp_path / "stack" / ".lock"
    probe = (
        "import fcntl, sys\n"
        "fh = open(sys.argv[1], 'w')\n"
        "try:\n"
        "    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    sys.exit(7)\n"
    )
    with processes.locked(lock_file):
        held = subprocess.run([sys.executable, "-c", probe, str(lock_file)], timeout=30)
    free = subprocess.run([sys.executable, "-c", probe, str(lock_file)], timeout=30)
    assert (held.returncode, free.returncode) == (7, 0)
