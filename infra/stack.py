"""Start, stop and inspect the local stack (Kafka KRaft, Redis, InfluxDB 1.x) of one profile.

    python -m infra.stack start  [--profile dev|test] [--only kafka,redis,influx]
    python -m infra.stack status [--profile ...]   # exit 0 if all healthy, else 3
    python -m infra.stack topics [--profile ...]   # create the topics of schemas/topics.py
    python -m infra.stack stop   [--profile ...]
    python -m infra.stack reset  [--profile ...]   # stop, then delete the profile's data

From Python (pytest fixtures)::

    from infra import stack
    settings = stack.ensure_started("test")          # idempotent; raises StackError
    stack.stop("test")
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from config import settings as settings_mod
from config.settings import Settings
from infra import processes, topics
from infra.services import SERVICE_NAMES, Service, ServiceError
from infra.services import build as build_services

Out = Callable[[str], None]

EXIT_FAILED = 1
EXIT_UNHEALTHY = 3
EXIT_TOPIC_MISMATCH = 4


class StackError(RuntimeError):
    """A service failed to start (the message includes the tail of its log), or topics are wrong."""


class TopicMismatch(StackError):
    """An existing topic has fewer partitions than schemas/topics.py says."""


def _print(line: str) -> None:
    print(line, flush=True)


def _lock(settings: Settings):
    return processes.locked(settings.stack_dir / ".lock")


def _names(only: Sequence[str] | str | None) -> list[str] | None:
    if only is None:
        return None
    if isinstance(only, str):
        only = [part.strip() for part in only.split(",") if part.strip()]
    return list(only)


# ----------------------------------------------------------------------------- start


def ensure_started(
    profile: str | None = "test",
    services: Sequence[str] | str | None = None,
    *,
    create_topics: bool = True,
    out: Out | None = _print,
) -> Settings:
    """Start whatever of the profile's stack is not running, wait until it answers, create the topics.

    Idempotent and safe to call from several processes at once. ``services``
    limits it to some of ``kafka``, ``redis``, ``influx``. Returns the profile's
    settings (bootstrap servers, URLs). Raises StackError with the failing
    service's log tail.
    """
    say = out or (lambda _line: None)
    settings = settings_mod.load(profile)
    selected = build_services(settings, _names(services))
    started = time.monotonic()
    with _lock(settings):
        launched: dict[str, tuple[Service, int, float]] = {}
        failures: list[str] = []
        for svc in selected:
            pid = processes.find_running(svc.process)
            if pid is not None:
                if svc.healthy():
                    say(f"{svc.name}: already running on {svc.describe()} (pid {pid})")
                    continue
                say(f"{svc.name}: running (pid {pid}) but not answering yet; waiting")
                launched[svc.name] = (svc, pid, time.monotonic())
                continue
            svc.process.pid_file.unlink(missing_ok=True)  # stale, if any
            busy = [port for port in svc.ports() if processes.port_open(port)]
            if busy:
                reason = f"port {busy} in use by a process that is not this stack's {svc.name} (a system service?)"
                failures.append(_failure(svc, reason, with_log=False))
                continue
            try:
                svc.prepare(say)
                t0 = time.monotonic()
                pid = processes.spawn(svc.process, svc.argv(), svc.log_file, env=svc.env())
            except ServiceError as exc:
                failures.append(_failure(svc, str(exc).removeprefix(f"{svc.name}: ")))
                continue
            say(f"{svc.name}: starting on {svc.describe()} (pid {pid}) ...")
            launched[svc.name] = (svc, pid, t0)

        failures += _wait_all_ready(launched, say)
        if failures:
            raise StackError("\n".join(failures))
        if create_topics and any(svc.name == "kafka" for svc in selected):
            kafka = next(svc for svc in selected if svc.name == "kafka")
            _ensure_topics(kafka.address, say, warm_up=True)
    if launched:
        say(f"stack {settings.profile}: up in {time.monotonic() - started:.1f}s")
    else:
        say(f"stack {settings.profile}: already up, nothing started")
    return settings


def _wait_all_ready(launched: dict[str, tuple[Service, int, float]], say: Out) -> list[str]:
    """Poll every launched service until it answers; report each as it becomes ready. Returns the failures."""
    pending = dict(launched)
    failures: list[str] = []
    while pending:
        for name, (svc, pid, t0) in list(pending.items()):
            reason = None
            if svc.healthy(timeout=1.0):
                try:
                    note = svc.after_ready()
                    say(f"{svc.name}: ready in {time.monotonic() - t0:.1f}s" + (f", {note}" if note else ""))
                except ServiceError as exc:
                    reason = str(exc).removeprefix(f"{svc.name}: ")
            elif not processes.still_running(pid, svc.process):
                processes.reap(pid)
                svc.process.pid_file.unlink(missing_ok=True)
                reason = f"process {pid} exited during start-up"
            elif time.monotonic() > t0 + svc.ready_timeout:
                reason = (
                    f"not ready after {svc.ready_timeout:.0f}s (pid {pid} still running; "
                    f"python -m infra.stack stop --profile {svc.settings.profile})"
                )
            else:
                continue
            del pending[name]
            if reason is not None:
                failures.append(_failure(svc, reason))
        if pending:
            time.sleep(0.2)
    return failures


def _failure(svc: Service, reason: str, with_log: bool = True) -> str:
    if not with_log:  # it never started (e.g. port taken): no new log lines, but say where they go
        return f"{svc.name} FAILED: {reason}\n  nothing was started for {svc.name}; its log: {svc.log_file}"
    lines = processes.tail(svc.log_file, 30)
    body = "\n".join(f"    {line}" for line in lines) if lines else "    (log is empty)"
    return f"{svc.name} FAILED: {reason}\n  last lines of {svc.log_file}:\n{body}\n  log: {svc.log_file}"


def _ensure_topics(bootstrap: str, say: Out, warm_up: bool = False) -> list[topics.TopicResult]:
    try:
        results = topics.ensure_topics(bootstrap)
    except topics.TopicError as exc:
        raise StackError(f"topics FAILED: {exc}") from exc
    say(topics.format_table(results))
    for problem in (p for r in results for p in r.problems()):
        say(problem)
    if any(r.is_error for r in results):
        raise TopicMismatch("topics: partition counts contradict schemas/topics.py (see above)")
    if warm_up:
        t0 = time.monotonic()
        try:
            topics.warm_up_coordinators(bootstrap)
        except topics.TopicError as exc:
            # Only an optimisation (clients retry coordinator lookups themselves): never fail start on it.
            say(f"kafka: warning: coordinator warm-up incomplete after {time.monotonic() - t0:.1f}s ({exc}); "
                "the first consumer group may take a few seconds longer")
        else:
            say(f"kafka: group and transaction coordinators ready in {time.monotonic() - t0:.1f}s")
    return results


# ----------------------------------------------------------------------------- stop / reset


def stop(
    profile: str | None = "test", services: Sequence[str] | str | None = None, *, out: Out | None = _print
) -> None:
    """Stop the profile's services (all, or ``services``). Idempotent; only ever signals our own processes."""
    say = out or (lambda _line: None)
    settings = settings_mod.load(profile)
    selected = build_services(settings, _names(services))
    with _lock(settings):
        for svc in reversed(selected):
            say(processes.describe_stop(svc.name, processes.stop(svc.process)))


def reset(
    profile: str | None = "test", services: Sequence[str] | str | None = None, *, out: Out | None = _print
) -> None:
    """Stop, then delete the profile's data (all of ``<state_dir>/<profile>``, or only the named services')."""
    say = out or (lambda _line: None)
    names = _names(services)
    settings = settings_mod.load(profile)
    stop(profile, names, out=out)
    stack_dir = settings.stack_dir
    # Guard the rm -rf: it must be <state_dir>/<profile>, never the shared lib/ or anything above.
    if stack_dir.parent.resolve() != settings.state_dir.resolve() or stack_dir.name != settings.profile:
        raise StackError(f"refusing to delete {stack_dir}: not <state_dir>/<profile>")
    with _lock(settings):
        if names is None:
            for child in sorted(stack_dir.iterdir()) if stack_dir.exists() else []:
                if child.name == ".lock":
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            say(f"reset: deleted everything in {stack_dir}")
        else:
            for svc in build_services(settings, names):
                shutil.rmtree(svc.data_dir, ignore_errors=True)
                svc.log_file.unlink(missing_ok=True)
                say(f"reset: deleted {svc.data_dir} and {svc.log_file.name}")


# ----------------------------------------------------------------------------- status


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # "healthy" | "running" (process up, not answering) | "stopped"
    pid: int | None
    address: str
    log_file: str


def status(profile: str | None = "test", services: Sequence[str] | str | None = None) -> list[ServiceStatus]:
    settings = settings_mod.load(profile)
    result = []
    for svc in build_services(settings, _names(services)):
        pid = processes.find_running(svc.process)
        if pid is None:
            state = "healthy (not ours!)" if svc.healthy() else "stopped"
        else:
            state = "healthy" if svc.healthy(timeout=2.0) else "running"
        result.append(ServiceStatus(svc.name, state, pid, svc.describe(), str(svc.log_file)))
    return result


def is_healthy(profile: str | None = "test", services: Sequence[str] | str | None = None) -> bool:
    return all(s.state == "healthy" for s in status(profile, services))


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description="Local Kafka/Redis/InfluxDB stack.")
    parser.add_argument("command", choices=["start", "stop", "status", "topics", "reset"])
    parser.add_argument("--profile", default=None, help="dev or test (default: $KUAILV_PROFILE or dev)")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(SERVICE_NAMES)}")
    args = parser.parse_args(argv)
    try:
        settings = settings_mod.load(args.profile)
        names = _names(args.only)
        build_services(settings, names)  # validate --only early
    except ValueError as exc:
        parser.error(str(exc))
    profile = settings.profile

    try:
        if args.command == "start":
            ensure_started(profile, names)
        elif args.command == "stop":
            stop(profile, names)
        elif args.command == "reset":
            reset(profile, names)
        elif args.command == "status":
            rows = status(profile, names)
            _print(_status_table(rows))
            return 0 if all(r.state == "healthy" for r in rows) else EXIT_UNHEALTHY
        elif args.command == "topics":
            _print(f"topics: on {settings.kafka_bootstrap}")
            _ensure_topics(settings.kafka_bootstrap, _print)
    except StackError as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return EXIT_TOPIC_MISMATCH if isinstance(exc, TopicMismatch) else EXIT_FAILED
    return 0


def _status_table(rows: list[ServiceStatus]) -> str:
    table = [("service", "state", "pid", "address", "log")]
    table += [(r.name, r.state, str(r.pid or "-"), r.address, r.log_file) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table)


if __name__ == "__main__":
    sys.exit(main())
