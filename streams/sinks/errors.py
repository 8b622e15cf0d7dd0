"""Sink errors: infrastructure failures the worker retries (it never acks a batch
whose outputs were not all written)."""

from __future__ import annotations


class SinkError(Exception):
    """A write to Kafka, Redis or InfluxDB failed; the batch will be retried."""
