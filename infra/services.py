"""The three services of the local stack: config files, launch command, readiness.

Each service lives in ``<stack_dir>/<name>/`` (config and data; also the
process's working directory, which is how we recognise it), logs to
``<stack_dir>/logs/<name>.log`` and has a PID file in ``<stack_dir>/pids/``.
Everything binds to 127.0.0.1 on the profile's ports from ``config.settings``;
no system service (``/etc/redis``, ``/etc/influxdb``, systemd) is used.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import shutil
import socket
import subprocess
import urllib.parse
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from config.settings import Settings
from infra import kafka_jars
from infra.processes import LAUNCH_MARKER, ProcessSpec, port_open


class ServiceError(RuntimeError):
    """A service could not be prepared, launched or reached."""

    def __init__(self, service: str, message: str, log_file: Path | None = None) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.log_file = log_file


class Service(ABC):
    name: ClassVar[str]
    token: ClassVar[str]  # identifies the process in /proc/<pid>/cmdline
    ready_timeout: ClassVar[float]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def data_dir(self) -> Path:
        return self.settings.stack_dir / self.name

    @property
    def log_file(self) -> Path:
        return self.settings.stack_dir / "logs" / f"{self.name}.log"

    @property
    def process(self) -> ProcessSpec:
        return ProcessSpec(self.name, self.data_dir, self.token, self.settings.stack_dir / "pids" / f"{self.name}.pid")

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ports(self) -> list[int]:
        """Every port the process binds (checked free before launch)."""
        return [self.port]

    def describe(self) -> str:
        return self.address

    @abstractmethod
    def prepare(self, say: Callable[[str], None]) -> None:
        """Check the binary, write config files, initialise storage. Idempotent."""

    @abstractmethod
    def argv(self) -> list[str]: ...

    def env(self) -> dict[str, str] | None:
        return None

    @abstractmethod
    def healthy(self, timeout: float = 1.0) -> bool:
        """One quick probe: does the service answer requests?"""

    def after_ready(self) -> str:
        """Run once it answers (e.g. create the database); returns a note for the progress line."""
        return ""

    def _binary(self, name: str, package: str) -> str:
        path = shutil.which(name)
        if path is None:
            raise ServiceError(
                self.name, f"{name} not found on PATH: apt-get install -y {package} (or scripts/setup.sh)"
            )
        return path


class Kafka(Service):
    """One KRaft node that is both broker and controller."""

    name = "kafka"
    token = "kafka.Kafka"
    ready_timeout = 90.0
    node_id = 1

    @property
    def port(self) -> int:
        return self.settings.kafka_port

    @property
    def controller_port(self) -> int:
        return self.settings.kafka_controller_port

    def ports(self) -> list[int]:
        return [self.port, self.controller_port]

    def describe(self) -> str:
        return f"{self.address} (controller {self.controller_port})"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "data"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.data_dir / "log4j.properties"

    @property
    def lib_dir(self) -> Path:
        return kafka_jars.lib_dir(self.settings.state_dir)

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        if java_home and (Path(java_home) / "bin" / "java").is_file():
            return str(Path(java_home) / "bin" / "java")
        return self._binary("java", "openjdk-17-jre-headless")

    def _jvm_args(self) -> list[str]:
        heap = os.environ.get("KAFKA_HEAP_OPTS", "-Xms256m -Xmx512m").split()
        return [
            self._java(),
            *heap,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.log4j_file}",
            "-cp",
            f"{self.lib_dir}/*",
        ]

    def server_properties(self) -> str:
        p, c = self.port, self.controller_port
        lines = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": f"{self.node_id}@127.0.0.1:{c}",
            "listeners": f"PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{p}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.log_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            # 50 internal partitions by default; 10 makes the first consumer group in a test faster.
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            # The simulator replays days in the past and Kafka timestamps are event time: the telemetry
            # topics' 7-day retention would delete those segments at the next check (every 5 min by
            # default) while workers still read them (offsets reset, points lost). Locally, check daily.
            "log.retention.check.interval.ms": str(24 * 3600 * 1000),
        }
        header = "# Generated by infra/services.py on every start; edit that file, not this one.\n"
        return header + "".join(f"{k}={v}\n" for k, v in lines.items())

    @staticmethod
    def log4j_properties() -> str:
        # log4j 1.x syntax (Kafka 3.x uses reload4j). Everything goes to stdout, which is the log file.
        return (
            "# Generated by infra/services.py\n"
            "log4j.rootLogger=INFO, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka=INFO\n"
            "log4j.logger.org.apache.kafka=INFO\n"
            "log4j.logger.kafka.request.logger=WARN\n"
            "log4j.logger.state.change.logger=WARN\n"
            "log4j.logger.kafka.log.LogCleaner=WARN\n"
            "log4j.logger.kafka.authorizer.logger=WARN\n"
            "# The full config dump (about 330 lines, twice per start): server.properties says it all.\n"
            "log4j.logger.kafka.server.KafkaConfig=WARN\n"
        )

    @staticmethod
    def new_cluster_id() -> str:
        """A Kafka Uuid as text: 16 random bytes, base64url, no padding (22 chars); never starts with '-'."""
        while True:
            text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            if not text.startswith("-"):
                return text

    def prepare(self, say: Callable[[str], None]) -> None:
        self._java()
        try:
            kafka_jars.ensure_jars(self.lib_dir)
        except kafka_jars.KafkaJarsError as exc:
            raise ServiceError(self.name, str(exc)) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(self.server_properties())
        self.log4j_file.write_text(self.log4j_properties())
        if (self.log_dir / "meta.properties").exists():
            return
        cluster_id = self.new_cluster_id()
        say(f"kafka: formatting storage in {self.log_dir} (cluster id {cluster_id}) ...")
        cmd = [
            *self._jvm_args(),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.properties_file),
        ]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n----- {LAUNCH_MARKER} kafka storage format: {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.run(cmd, cwd=self.data_dir, stdout=log, stderr=subprocess.STDOUT, timeout=120)
        if proc.returncode != 0:
            raise ServiceError(self.name, f"StorageTool format failed (exit {proc.returncode})", self.log_file)

    def argv(self) -> list[str]:
        return [*self._jvm_args(), "kafka.Kafka", str(self.properties_file)]

    def healthy(self, timeout: float = 1.0) -> bool:
        if not port_open(self.port):
            return False
        admin = AdminClient(quiet_client_config(self.address))
        try:
            metadata = admin.list_topics(timeout=timeout)
        except KafkaException:
            return False
        return len(metadata.brokers) > 0


_CLIENT_LOG = logging.getLogger("infra.kafka_client")
_CLIENT_LOG.addHandler(logging.NullHandler())
_CLIENT_LOG.propagate = False


def quiet_client_config(bootstrap: str) -> dict[str, object]:
    """Kafka client settings that keep librdkafka's connection-refused chatter off stderr."""
    from config.kafka_client import client_config

    return {**client_config(bootstrap), "socket.timeout.ms": 5000, "logger": _CLIENT_LOG}


class Redis(Service):
    name = "redis"
    token = "redis-server"
    ready_timeout = 20.0

    @property
    def port(self) -> int:
        return self.settings.redis_port

    @property
    def config_file(self) -> Path:
        return self.data_dir / "redis.conf"

    def config(self) -> str:
        return (
            "# Generated by infra/services.py on every start.\n"
            "bind 127.0.0.1\n"
            f"port {self.port}\n"
            f'dir "{self.data_dir}"\n'
            "daemonize no\n"
            "supervised no\n"
            'logfile ""\n'
            "loglevel notice\n"
            "databases 16\n"
            "appendonly yes\n"
            "appendfsync everysec\n"
            'save ""\n'
        )

    def prepare(self, say: Callable[[str], None]) -> None:
        self._binary("redis-server", "redis-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config())

    def argv(self) -> list[str]:
        return [self._binary("redis-server", "redis-server"), str(self.config_file)]

    def healthy(self, timeout: float = 1.0) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class Influx(Service):
    """InfluxDB 1.x (Debian ships 1.6.7): the v1 HTTP API, /write and /query."""

    name = "influx"
    token = "influxd"
    ready_timeout = 30.0

    @property
    def port(self) -> int:
        return self.settings.influx_port

    @property
    def rpc_port(self) -> int:
        return self.settings.influx_rpc_port

    def ports(self) -> list[int]:
        return [self.port, self.rpc_port]

    def describe(self) -> str:
        return f"{self.address} (rpc {self.rpc_port})"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "influxdb.conf"

    def config(self) -> str:
        d = self.data_dir
        return (
            "# Generated by infra/services.py on every start.\n"
            "reporting-disabled = true\n"  # upstream name
            "reporting-enabled = false\n"  # Debian's patched name; each ignores the other
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            "\n[meta]\n"
            f'  dir = "{d / "meta"}"\n'
            "  retention-autocreate = true\n"
            "\n[data]\n"
            f'  dir = "{d / "data"}"\n'
            f'  wal-dir = "{d / "wal"}"\n'
            '  wal-fsync-delay = "0s"\n'
            "  query-log-enabled = false\n"
            "\n[monitor]\n"
            "  store-enabled = false\n"  # no _internal database
            "\n[subscriber]\n"
            "  enabled = false\n"
            "\n[http]\n"
            "  enabled = true\n"
            f'  bind-address = "127.0.0.1:{self.port}"\n'
            "  auth-enabled = false\n"
            "  log-enabled = false\n"  # no access-log line per write
            "  pprof-enabled = false\n"
            "\n[logging]\n"
            '  format = "logfmt"\n'
            '  level = "info"\n'
            "  suppress-logo = true\n"
        )

    def prepare(self, say: Callable[[str], None]) -> None:
        self._binary("influxd", "influxdb")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config())

    def argv(self) -> list[str]:
        return [self._binary("influxd", "influxdb"), "-config", str(self.config_file)]

    def env(self) -> dict[str, str]:
        # INFLUXDB_* variables override the config file; ours must win.
        return {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}

    def _request(self, method: str, path: str, body: str | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def healthy(self, timeout: float = 1.0) -> bool:
        try:
            status, _ = self._request("GET", "/ping", timeout=timeout)
        except OSError:
            return False
        return status == 204

    def after_ready(self) -> str:
        db = self.settings.influx_db
        query = urllib.parse.urlencode({"q": f'CREATE DATABASE "{db}"'})
        try:
            status, body = self._request("POST", "/query", body=query, timeout=10.0)
        except OSError as exc:
            raise ServiceError(self.name, f"CREATE DATABASE {db} failed: {exc}", self.log_file) from exc
        if status != 200 or b'"error"' in body:
            raise ServiceError(self.name, f"CREATE DATABASE {db} failed: HTTP {status} {body[:200]!r}", self.log_file)
        return f'database "{db}" ok'


SERVICE_TYPES: dict[str, type[Service]] = {"kafka": Kafka, "redis": Redis, "influx": Influx}
SERVICE_NAMES: tuple[str, ...] = tuple(SERVICE_TYPES)


def build(settings: Settings, names: list[str] | tuple[str, ...] | None = None) -> list[Service]:
    """The services to manage, in start order (Kafka first: it is the slowest to come up)."""
    wanted = SERVICE_NAMES if names is None else tuple(names)
    unknown = sorted(set(wanted) - set(SERVICE_TYPES))
    if unknown:
        raise ValueError(f"unknown service(s) {unknown}; choose from {list(SERVICE_NAMES)}")
    return [SERVICE_TYPES[n](settings) for n in SERVICE_NAMES if n in wanted]
