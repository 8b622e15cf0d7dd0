"""Codec errors. Each carries a stable ``reason_code`` that dead letters record."""

from __future__ import annotations


class CodecError(Exception):
    reason_code = "AVRO_DECODE_FAILED"

    def __init__(self, message: str, *, schema_id: int | None = None) -> None:
        super().__init__(message)
        self.schema_id = schema_id


class NotAvroFramed(CodecError):
    """The bytes do not start with the Confluent magic byte and a schema id."""

    reason_code = "NOT_AVRO_FRAMED"


class UnknownSchemaId(CodecError):
    """The schema id in the header is not in the catalog/registry."""

    reason_code = "UNKNOWN_SCHEMA_ID"


class AvroDecodeFailed(CodecError):
    """The body does not decode with the writer schema its header names."""

    reason_code = "AVRO_DECODE_FAILED"


class EncodeFailed(CodecError):
    """A record does not match the schema it is written with."""

    reason_code = "AVRO_ENCODE_FAILED"


class UnknownRecordType(CodecError):
    """No schema with this record name exists."""

    reason_code = "UNEXPECTED_RECORD_TYPE"
