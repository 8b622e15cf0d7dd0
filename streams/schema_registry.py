"""Schema ids from a Confluent-compatible Schema Registry (``SCHEMA_REGISTRY_URL``).

Subjects follow TopicRecordNameStrategy (``<topic>-<record full name>``) because
one topic carries many record types. Writing registers the committed schema
(idempotent: the registry returns the existing id); reading fetches unknown ids
once and caches them. The committed schemas stay the source of truth for
names and versions; the registry only assigns ids.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from schemas.catalog import CommittedCatalog, SchemaEntry, full_name, make_entry
from schemas.errors import UnknownSchemaId
from schemas.topics import topic_for_record


class RegistryCatalog:
    def __init__(self, client: Any, committed: CommittedCatalog | None = None) -> None:
        self._client = client  # confluent_kafka.schema_registry.SchemaRegistryClient
        self._committed = committed or CommittedCatalog.load()
        self._by_id: dict[int, SchemaEntry] = {}
        self._latest: dict[str, SchemaEntry] = {}

    @classmethod
    def connect(cls, url: str) -> RegistryCatalog:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        return cls(SchemaRegistryClient({"url": url}))

    def latest(self, name: str) -> SchemaEntry:
        entry = self._latest.get(name)
        if entry is None:
            from confluent_kafka.schema_registry import Schema

            local = self._committed.latest(name)
            subject = f"{topic_for_record(local.short_name).name}-{local.name}"
            schema_id = self._client.register_schema(subject, Schema(json.dumps(local.raw), "AVRO"))
            entry = replace(local, id=schema_id)
            self._latest[local.name] = self._latest[local.short_name] = entry
            self._by_id[schema_id] = entry
        return entry

    def by_id(self, schema_id: int) -> SchemaEntry:
        entry = self._by_id.get(schema_id)
        if entry is None:
            try:
                schema = self._client.get_schema(schema_id)
            except Exception as exc:  # SchemaRegistryError: 404 for unknown ids
                raise UnknownSchemaId(f"schema id {schema_id}: registry says {exc}", schema_id=schema_id) from exc
            raw = json.loads(schema.schema_str)
            entry = make_entry(schema_id, full_name(raw), 0, raw)
            self._by_id[schema_id] = entry
        return entry
