"""RegistryCatalog with confluent-kafka's real SchemaRegistryClient against a stub
of the two Confluent REST endpoints it uses (register under a subject, fetch by
id). No Confluent-compatible registry can be installed here (see README), so
this is the only registry check; the stub follows the documented API shapes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from schemas.codec import AvroCodec
from schemas.errors import UnknownSchemaId
from streams.schema_registry import RegistryCatalog


class StubRegistry(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ids: dict[str, int] = {}  # canonical schema -> id
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}


class _Handler(BaseHTTPRequestHandler):
    server: StubRegistry

    def log_message(self, *args: object) -> None:
        return

    def _reply(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if len(parts) != 3 or parts[0] != "subjects" or parts[2] != "versions":
            return self._reply(404, {"error_code": 404, "message": f"no route {self.path}"})
        canonical = json.dumps(json.loads(body["schema"]), sort_keys=True)
        schema_id = self.server.ids.setdefault(canonical, len(self.server.ids) + 1)
        self.server.schemas[schema_id] = body["schema"]
        versions = self.server.subjects.setdefault(parts[1], [])
        if schema_id not in versions:
            versions.append(schema_id)
        return self._reply(200, {"id": schema_id})

    def do_GET(self) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and int(parts[2]) in self.server.schemas:
            return self._reply(200, {"schema": self.server.schemas[int(parts[2])], "schemaType": "AVRO"})
        return self._reply(404, {"error_code": 40403, "message": "Schema not found"})


@pytest.fixture
def registry() -> Iterator[StubRegistry]:
    server = StubRegistry()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def url(server: StubRegistry) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


PING = {"event_id": "e-1", "driver_id": "DRV-001", "vehicle_id": "VAN-001", "event_time": 1_780_293_600_000,
        "producer": "driver-app/3.2", "lat": 39.9, "lng": 116.4, "speed_kmh": 30.0, "heading_deg": 90.0,
        "accuracy_m": None}


def test_writing_registers_under_the_topic_record_subject_and_uses_the_registry_id(registry: StubRegistry) -> None:
    codec = AvroCodec(RegistryCatalog.connect(url(registry)))
    framed = codec.encode("GpsPing", PING)
    assert list(registry.subjects) == ["kuailv.gps.v1-kuailv.telemetry.GpsPing"]
    (schema_id,) = registry.subjects["kuailv.gps.v1-kuailv.telemetry.GpsPing"]
    assert framed[0] == 0 and int.from_bytes(framed[1:5], "big") == schema_id
    codec.encode("GpsPing", PING)
    assert len(registry.schemas) == 1, "re-encoding must not register again"


def test_a_reader_with_an_empty_cache_fetches_the_writer_schema_by_id(registry: StubRegistry) -> None:
    framed = AvroCodec(RegistryCatalog.connect(url(registry))).encode("GpsPing", PING)
    decoded = AvroCodec(RegistryCatalog.connect(url(registry))).decode(framed)
    assert decoded.record_type == "GpsPing"
    assert decoded.value["driver_id"] == "DRV-001"


def test_an_id_the_registry_does_not_know_is_an_unknown_schema_id(registry: StubRegistry) -> None:
    codec = AvroCodec(RegistryCatalog.connect(url(registry)))
    with pytest.raises(UnknownSchemaId) as err:
        codec.decode(b"\x00" + (4242).to_bytes(4, "big") + b"\x02")
    assert err.value.reason_code == "UNKNOWN_SCHEMA_ID" and err.value.schema_id == 4242
