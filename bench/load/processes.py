"""The pipeline's processes as production runs them (``kuailv worker``, ``serve``, ``webhooks run``),
started by the harness with its environment and stopped by PID, whatever happens."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KUAILV = str(ROOT / ".venv" / "bin" / "kuailv")


def port_or_free(preferred: int) -> int:
    """``preferred`` if nothing listens on it on loopback, else a free port (a leftover must not fail a run)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])


class Pipeline:
    def __init__(self, profile: str, env: dict[str, str], log_dir: Path) -> None:
        self.profile, self.env, self.log_dir = profile, {**os.environ, **env}, log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 (the child keeps it)
        proc = subprocess.Popen([KUAILV, "--profile", self.profile, *args], cwd=ROOT, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def wait_http(self, url: str, name: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.procs[name].returncode}; see {self.log_dir / name}.log")
            try:
                urllib.request.urlopen(url, timeout=1).read()
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"{name} did not answer {url} within {timeout_s:.0f} s; see {self.log_dir / name}.log")

    def dead(self) -> list[str]:
        return [f"{n} exited with {p.returncode}" for n, p in self.procs.items() if p.poll() is not None]

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items()}

    def stop(self, timeout_s: float = 20) -> None:
        """SIGTERM each (they finish the batch in hand and exit), then SIGKILL what is left, by PID."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for p in self.procs.values():
            try:
                p.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
