"""The local stack manager (infra.stack) on an ISOLATED stack instance.

Never touches the dev/test stacks other sessions use: the module sets ``KUAILV_STATE_DIR`` to a tmp
directory (its ``lib/`` is a symlink to the real Kafka jars) and every port to a free one in 4xxxx,
picked at run time; the profile is "test" (the name only picks the defaults we override). Everything
started here is stopped, and any leftover process of the tmp state dir killed by PID, at teardown.

Promises checked (infra/README.md): idempotent start and stop, topics created with the contract's
partition counts and configs, a topic with fewer partitions refused (TopicMismatch / exit 4) and left
alone, a stale PID file never leads to signalling someone else's process, a failing service is named
in the error together with its log.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from config import settings as settings_mod
from config.settings import PROJECT_ROOT, Settings
from infra import kafka_jars, processes
from infra import stack as infra_stack
from infra import topics as infra_topics
from infra.services import build as build_services
from infra.services import quiet_client_config
from schemas.topics import ALL_TOPICS, DAY_MS, DEAD_LETTERS, GPS, ORDER_EVENTS, ORDER_STATE, SENSORS

pytestmark = pytest.mark.integration

PROFILE = "test"
# Settings that would point the isolated stack's clients somewhere else if inherited from the shell.
_INHERITED = ("KUAILV_KAFKA_BOOTSTRAP", "KUAILV_REDIS_URL", "KUAILV_INFLUX_URL", "KUAILV_PROFILE")
_PORT_VARS = (
    "KUAILV_KAFKA_PORT",
    "KUAILV_KAFKA_CONTROLLER_PORT",
    "KUAILV_REDIS_PORT",
    "KUAILV_INFLUX_PORT",
    "KUAILV_INFLUX_RPC_PORT",
)
_taken: set[int] = set()  # ports handed out in this run (two isolated stacks must not share one)


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports in 40000-49999 that nothing holds right now (a bind probe on 127.0.0.1)."""
    rng = random.Random()
    found: list[int] = []
    while len(found) < n:
        port = rng.randint(40000, 49999)
        if port in _taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))  # no SO_REUSEADDR: also refuses ports in TIME_WAIT
            except OSError:
                continue
        _taken.add(port)
        found.append(port)
    return found


def _processes_of(state_dir: Path) -> dict[int, str]:
    """Live processes whose working directory is inside ``state_dir`` or whose command line names it."""
    roots = {str(state_dir), str(state_dir.resolve())}
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        if any(root in cmdline or cwd == root or cwd.startswith(root + "/") for root in roots):
            found[int(entry.name)] = cmdline
    return found


@dataclass
class IsolatedStack:
    state_dir: Path
    ports: dict[str, int]
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = {"KUAILV_STATE_DIR": str(self.state_dir), **{k: str(v) for k, v in self.ports.items()}}

    @classmethod
    def create(cls, root: Path, real_lib: Path) -> IsolatedStack:
        root.mkdir(parents=True, exist_ok=True)
        (root / "lib").symlink_to(real_lib, target_is_directory=True)
        return cls(root, dict(zip(_PORT_VARS, _free_ports(len(_PORT_VARS)), strict=True)))

    def apply(self, mp: pytest.MonkeyPatch) -> None:
        for name in _INHERITED:
            mp.delenv(name, raising=False)
        for name, value in self.env.items():
            mp.setenv(name, value)

    def settings(self) -> Settings:
        settings = settings_mod.load(PROFILE)
        assert settings.state_dir == self.state_dir and settings.redis_port == self.ports["KUAILV_REDIS_PORT"]
        return settings

    def pids(self) -> dict[str, int | None]:
        return {s.name: s.pid for s in infra_stack.status(PROFILE)}

    def teardown(self) -> list[str]:
        """Stop (under this stack's env), kill whatever survived by PID, remove the dir. Returns leftovers."""
        with pytest.MonkeyPatch.context() as mp:
            self.apply(mp)
            with contextlib.suppress(Exception):
                infra_stack.stop(PROFILE, out=None)
        leftovers = _processes_of(self.state_dir)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # a process of this isolated stack: started by this module
        (self.state_dir / "lib").unlink(missing_ok=True)  # never follow the symlink into the real jars
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return [f"{pid}: {cmd}" for pid, cmd in leftovers.items()]


@pytest.fixture(scope="module")
def real_lib() -> Path:
    """The real ``<state_dir>/lib`` (Kafka jars), resolved BEFORE any override; fetched once if missing."""
    lib = settings_mod.load(PROFILE).state_dir.resolve() / "lib"
    kafka_jars.ensure_jars(lib / "kafka", quiet=True)
    return lib


@pytest.fixture(scope="module")
def iso(tmp_path_factory: pytest.TempPathFactory, real_lib: Path) -> Iterator[IsolatedStack]:
    """The isolated stack's environment, set for the whole module and restored afterwards."""
    iso = IsolatedStack.create(tmp_path_factory.mktemp("kuailv-iso") / "state", real_lib)
    mp = pytest.MonkeyPatch()
    try:
        iso.apply(mp)
        yield iso
    finally:
        mp.undo()
        leftovers = iso.teardown()
    assert not leftovers, f"processes of the isolated stack survived stop(): {leftovers}"


@dataclass
class Started:
    settings: Settings
    seconds: float
    output: list[str]
    pids: dict[str, int | None]


@pytest.fixture(scope="module")
def live(iso: IsolatedStack) -> Started:
    """The isolated stack started cold (new data dirs, storage format, topics)."""
    assert not (iso.state_dir / PROFILE).exists()
    output: list[str] = []
    t0 = time.monotonic()
    settings = infra_stack.ensure_started(PROFILE, out=output.append)
    return Started(settings, time.monotonic() - t0, output, iso.pids())


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(quiet_client_config(settings.kafka_bootstrap))


def _partitions(admin: AdminClient, names: list[str]) -> dict[str, int]:
    futures = admin.describe_topics(TopicCollection(names), request_timeout=15)
    return {name: len(future.result().partitions) for name, future in futures.items()}


def _configs(admin: AdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names], request_timeout=15)
    return {res.name: {k: e.value for k, e in future.result().items()} for res, future in futures.items()}


def _delete_topic(admin: AdminClient, name: str) -> None:
    with contextlib.suppress(KafkaException):
        admin.delete_topics([name], operation_timeout=15)[name].result()
    deadline = time.monotonic() + 20
    while name in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"topic {name} still listed 20 s after deletion"
        time.sleep(0.1)


def _create_topic(admin: AdminClient, name: str, partitions: int, config: dict[str, str]) -> None:
    """Create, retrying while a just-deleted topic of that name is still being removed."""
    deadline = time.monotonic() + 20
    while True:
        future = admin.create_topics([NewTopic(name, partitions, 1, config=dict(config))], operation_timeout=15)[name]
        try:
            future.result()
            break
        except KafkaException as exc:
            err = exc.args[0]
            retriable = isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    deadline = time.monotonic() + 20
    while True:
        topic = admin.list_topics(timeout=10).topics.get(name)
        if topic and len(topic.partitions) == partitions and all(p.leader >= 0 for p in topic.partitions.values()):
            return
        assert time.monotonic() < deadline, f"topic {name} has no partition leaders after 20 s"
        time.sleep(0.1)


# ----------------------------------------------------------------------------- 1. start, idempotent, topics


def test_start_is_idempotent_healthy_and_creates_the_contract_topics(live: Started, iso: IsolatedStack) -> None:
    settings = live.settings
    assert settings.state_dir == iso.state_dir and settings.kafka_port == iso.ports["KUAILV_KAFKA_PORT"]
    assert settings.kafka_bootstrap == f"127.0.0.1:{iso.ports['KUAILV_KAFKA_PORT']}"
    assert all(live.pids.values()), live.pids
    assert f"stack {PROFILE}: up in" in live.output[-1], live.output

    # Second call: nothing launched, same processes, quick.
    output: list[str] = []
    t0 = time.monotonic()
    again = infra_stack.ensure_started(PROFILE, out=output.append)
    second = time.monotonic() - t0
    assert again == settings
    assert iso.pids() == live.pids
    assert output[-1] == f"stack {PROFILE}: already up, nothing started", output
    assert not any("starting on" in line for line in output), output
    assert second < 5.0, f"no-op start took {second:.1f}s (README: about 0.3 s); cold start took {live.seconds:.1f}s"

    rows = infra_stack.status(PROFILE)
    assert [(r.name, r.state) for r in rows] == [("kafka", "healthy"), ("redis", "healthy"), ("influx", "healthy")]
    assert all(Path(r.log_file).is_relative_to(iso.state_dir) for r in rows)
    assert infra_stack.is_healthy(PROFILE)
    for svc in build_services(settings):  # PID file = the recorded process, running in its own data dir
        assert processes.read_pid(svc.process.pid_file) == live.pids[svc.name]
        assert Path(os.readlink(f"/proc/{live.pids[svc.name]}/cwd")) == svc.data_dir.resolve()

    admin = _admin(settings)
    names = [spec.name for spec in ALL_TOPICS]
    assert _partitions(admin, names) == {spec.name: spec.partitions for spec in ALL_TOPICS}
    configs = _configs(admin, names)
    for spec in ALL_TOPICS:
        for key, value in spec.config.items():
            assert configs[spec.name][key] == value, (spec.name, key)
    assert configs[ORDER_STATE.name]["cleanup.policy"] == "compact"
    assert configs[ORDER_EVENTS.name]["retention.ms"] == "-1"
    for telemetry in (GPS, SENSORS):
        assert configs[telemetry.name]["cleanup.policy"] == "delete"
        assert configs[telemetry.name]["retention.ms"] == str(7 * DAY_MS)
    assert configs[DEAD_LETTERS.name]["retention.ms"] == str(30 * DAY_MS)


# ----------------------------------------------------------------------------- 2. fewer partitions


def test_topic_with_fewer_partitions_is_refused_and_left_alone(live: Started, iso: IsolatedStack) -> None:
    settings = live.settings
    admin = _admin(settings)
    spec = DEAD_LETTERS
    assert spec.partitions > 1
    _delete_topic(admin, spec.name)
    try:
        _create_topic(admin, spec.name, 1, spec.config)

        output: list[str] = []
        with pytest.raises(infra_stack.TopicMismatch, match="partition counts contradict"):
            infra_stack.ensure_started(PROFILE, out=output.append)
        assert any(
            line.startswith(f"ERROR: topic {spec.name} has 1 partitions") and f"says {spec.partitions}" in line
            for line in output
        ), output

        cli = subprocess.run(
            [sys.executable, "-m", "infra.stack", "topics", "--profile", PROFILE],
            cwd=PROJECT_ROOT,
            env=os.environ.copy(),  # the module's isolated settings
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == infra_stack.EXIT_TOPIC_MISMATCH == 4, cli.stdout + cli.stderr
        assert settings.kafka_bootstrap in cli.stdout
        assert f"ERROR: topic {spec.name} has 1 partitions" in cli.stdout
        assert "partition counts contradict" in cli.stderr

        # Never altered: still one partition; the conforming topics untouched.
        assert _partitions(admin, [spec.name]) == {spec.name: 1}
        others = [s for s in ALL_TOPICS if s is not spec]
        assert _partitions(admin, [s.name for s in others]) == {s.name: s.partitions for s in others}
        assert iso.pids() == live.pids  # and no service was restarted over it
    finally:  # back to the contract for the tests after this one
        _delete_topic(admin, spec.name)
        _create_topic(admin, spec.name, spec.partitions, spec.config)
    results = infra_topics.ensure_topics(settings.kafka_bootstrap, [spec])
    assert [(r.status, r.config_drift) for r in results] == [("exists", {})]
    assert _partitions(admin, [spec.name]) == {spec.name: spec.partitions}


# ----------------------------------------------------------------------------- 3. stale PID file


def test_stale_pid_file_never_leads_to_signalling_a_stranger(live: Started, iso: IsolatedStack) -> None:
    redis = build_services(live.settings, ["redis"])[0]
    pid_file = redis.process.pid_file
    infra_stack.stop(PROFILE, ["redis"], out=None)
    assert infra_stack.status(PROFILE, ["redis"])[0].state == "stopped"
    # The stranger even runs in redis's data directory: only the program name tells it apart.
    sleeper = subprocess.Popen(["sleep", "60"], cwd=redis.data_dir, stdin=subprocess.DEVNULL)
    try:
        pid_file.write_text(f"{sleeper.pid}\n")
        row = infra_stack.status(PROFILE, ["redis"])[0]
        assert (row.state, row.pid) == ("stopped", None)

        output: list[str] = []
        infra_stack.stop(PROFILE, ["redis"], out=output.append)
        assert output == [f"redis: not running (removed stale pid file for pid {sleeper.pid})"]
        assert not pid_file.exists()
        time.sleep(0.3)
        assert sleeper.poll() is None, "stop() signalled a process that is not the stack's"

        # start over a stale PID file: a new redis, the stranger untouched
        pid_file.write_text(f"{sleeper.pid}\n")
        infra_stack.ensure_started(PROFILE, ["redis"], out=None)
        new_pid = processes.read_pid(pid_file)
        assert new_pid not in (None, sleeper.pid)
        assert infra_stack.status(PROFILE, ["redis"])[0] == infra_stack.ServiceStatus(
            "redis", "healthy", new_pid, redis.describe(), str(redis.log_file)
        )
        assert sleeper.poll() is None

        # the PID file lies while redis runs: stop finds the real one, signals only it
        pid_file.write_text(f"{sleeper.pid}\n")
        output = []
        infra_stack.stop(PROFILE, ["redis"], out=output.append)
        assert len(output) == 1 and output[0].startswith(f"redis: stopped (pid {new_pid})"), output
        assert not Path(f"/proc/{new_pid}").exists() and not pid_file.exists()
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait(5)
        infra_stack.ensure_started(PROFILE, ["redis"], out=None)
    assert infra_stack.is_healthy(PROFILE)


# ----------------------------------------------------------------------------- 5. stop


def test_stop_twice_is_a_noop_and_leaves_no_process(live: Started, iso: IsolatedStack) -> None:
    assert _processes_of(iso.state_dir), "the isolated stack should be running before stop"
    output: list[str] = []
    infra_stack.stop(PROFILE, out=output.append)
    assert [line.split(":")[0] for line in output] == ["influx", "redis", "kafka"]
    assert all(": stopped (pid " in line for line in output), output  # SIGTERM was enough, no SIGKILL

    output = []
    t0 = time.monotonic()
    infra_stack.stop(PROFILE, out=output.append)
    assert output == ["influx: not running", "redis: not running", "kafka: not running"]
    assert time.monotonic() - t0 < 3.0

    assert _processes_of(iso.state_dir) == {}
    assert list((iso.state_dir / PROFILE / "pids").iterdir()) == []
    assert [(r.name, r.state, r.pid) for r in infra_stack.status(PROFILE)] == [
        ("kafka", "stopped", None),
        ("redis", "stopped", None),
        ("influx", "stopped", None),
    ]
    assert not infra_stack.is_healthy(PROFILE)


# ----------------------------------------------------------------------------- 4. port in use


@dataclass
class PortClash:
    stack: IsolatedStack
    error: infra_stack.StackError | None
    output: list[str]
    status: list[infra_stack.ServiceStatus]
    log_file: Path


@pytest.fixture(scope="module")
def port_clash(tmp_path_factory: pytest.TempPathFactory, real_lib: Path, iso: IsolatedStack) -> Iterator[PortClash]:
    """A second, fresh isolated stack started while something else listens on its Redis port."""
    other = IsolatedStack.create(tmp_path_factory.mktemp("kuailv-iso-clash") / "state", real_lib)
    try:
        with pytest.MonkeyPatch.context() as mp:
            other.apply(mp)
            settings = other.settings()
            holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                holder.bind(("127.0.0.1", settings.redis_port))
                holder.listen()
                output: list[str] = []
                error = None
                try:
                    infra_stack.ensure_started(PROFILE, out=output.append)
                except infra_stack.StackError as exc:
                    error = exc
            finally:
                holder.close()
            rows = infra_stack.status(PROFILE)  # after close: a listener that never answers would stall PING
            log_file = build_services(settings, ["redis"])[0].log_file
        yield PortClash(other, error, output, rows, log_file)
    finally:
        leftovers = other.teardown()
    assert not leftovers, f"processes of the second isolated stack survived stop(): {leftovers}"


def test_port_in_use_fails_naming_the_service_and_its_port(port_clash: PortClash) -> None:
    assert port_clash.error is not None, f"start succeeded although the Redis port was taken: {port_clash.output}"
    assert not isinstance(port_clash.error, infra_stack.TopicMismatch)
    message = str(port_clash.error)
    assert message.startswith("redis FAILED:"), message
    assert str(port_clash.stack.ports["KUAILV_REDIS_PORT"]) in message
    assert "kafka" not in message and "influx" not in message  # only the failing service is blamed


def test_port_in_use_message_contains_the_log_path(port_clash: PortClash) -> None:
    # README: "On failure it prints the service, the last 30 lines of its log and the log path".
    assert port_clash.error is not None
    assert str(port_clash.log_file) in str(port_clash.error), str(port_clash.error)


def test_port_in_use_leaves_nothing_orphaned_and_a_retry_completes(
    port_clash: PortClash, monkeypatch: pytest.MonkeyPatch
) -> None:
    # README is silent on the other services: start waits for every launched one and raises afterwards,
    # so they are left running (tests/conftest.py stops them). What must hold: the failed one has no
    # process and no PID file, the others are ours and visible to status/stop, and a retry finishes.
    other = port_clash.stack
    by_name = {r.name: r for r in port_clash.status}
    assert by_name["redis"].state == "stopped" and by_name["redis"].pid is None
    assert not (other.state_dir / PROFILE / "pids" / "redis.pid").exists()
    assert {by_name["kafka"].state, by_name["influx"].state} == {"healthy"}
    known = {r.pid for r in port_clash.status if r.pid}
    assert set(_processes_of(other.state_dir)) == known, "a process of the stack that status() does not know"

    other.apply(monkeypatch)
    output: list[str] = []
    infra_stack.ensure_started(PROFILE, out=output.append)
    assert infra_stack.is_healthy(PROFILE)
    pids = other.pids()
    assert (pids["kafka"], pids["influx"]) == (by_name["kafka"].pid, by_name["influx"].pid)
    assert any(line.startswith("redis: starting on") for line in output), output
    admin = _admin(other.settings())
    assert _partitions(admin, [s.name for s in ALL_TOPICS]) == {s.name: s.partitions for s in ALL_TOPICS}


def test_service_dying_at_start_reports_its_log_tail_and_path(
    port_clash: PortClash, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port bound but not listening: the pre-check sees it free, redis is launched and exits on bind.
    other = port_clash.stack
    other.apply(monkeypatch)
    settings = other.settings()
    infra_stack.stop(PROFILE, ["redis"], out=None)
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", settings.redis_port))  # no SO_REUSEADDR: redis's bind() fails
        with pytest.raises(infra_stack.StackError) as caught:
            infra_stack.ensure_started(PROFILE, ["redis"], out=None)
    finally:
        holder.close()
    message = str(caught.value)
    assert message.startswith("redis FAILED: process ") and "exited during start-up" in message, message
    assert f"last lines of {port_clash.log_file}:" in message
    assert message.rstrip().endswith(f"log: {port_clash.log_file}")
    assert "Address already in use" in message or "Could not create server TCP listening socket" in message
    assert infra_stack.status(PROFILE, ["redis"])[0].state == "stopped"
    assert not (settings.stack_dir / "pids" / "redis.pid").exists()


# ----------------------------------------------------------------------------- relative KUAILV_STATE_DIR


def test_relative_state_dir_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # README: KUAILV_STATE_DIR "moves .stack/". A relative value is resolved against the shell's directory
    # by settings, but the services are launched with cwd=<data dir> and relative config paths.
    monkeypatch.chdir(tmp_path)
    for name in _INHERITED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUAILV_STATE_DIR", "relative-state")
    monkeypatch.setenv("KUAILV_REDIS_PORT", str(_free_ports(1)[0]))
    try:
        infra_stack.ensure_started(PROFILE, ["redis"], out=None)
        assert infra_stack.is_healthy(PROFILE, ["redis"])
    finally:
        infra_stack.stop(PROFILE, ["redis"], out=None)
        leftovers = _processes_of(tmp_path / "relative-state")
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not leftovers
