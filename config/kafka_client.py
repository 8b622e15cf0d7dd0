"""The connection part of every Kafka client's configuration: the bootstrap servers, and for a secured
cluster the librdkafka security settings from ``KUAILV_KAFKA_SECURITY`` (read when a client is made,
never at import).

``KUAILV_KAFKA_SECURITY`` is ``;``-separated librdkafka properties, e.g. SASL/SCRAM over TLS::

    security.protocol=SASL_SSL;sasl.mechanisms=SCRAM-SHA-512;sasl.username=kuailv;
    sasl.password=...;ssl.ca.location=/etc/kuailv/kafka-ca.pem

or mutual TLS (``security.protocol=SSL;ssl.certificate.location=...;ssl.key.location=...;
ssl.ca.location=...``). Only connection and security properties are accepted, so this setting cannot
silently change a client's delivery semantics (acks, idempotence, offsets).
"""

from __future__ import annotations

import os

ENV = "KUAILV_KAFKA_SECURITY"
_ALLOWED_PREFIXES = ("security.protocol", "sasl.", "ssl.", "ssl_", "enable.ssl.", "client.dns.lookup")


class KafkaSecurityError(ValueError):
    pass


def security_properties(spec: str | None = None) -> dict[str, str]:
    """``KUAILV_KAFKA_SECURITY`` (or ``spec``) -> librdkafka properties; an error names the bad entry."""
    raw = os.environ.get(ENV, "") if spec is None else spec
    out: dict[str, str] = {}
    for item in (part.strip() for part in raw.split(";")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise KafkaSecurityError(f"{ENV}: {item.split('=')[0]!r} is not property=value")
        if not key.startswith(_ALLOWED_PREFIXES):
            raise KafkaSecurityError(f"{ENV}: {key!r} is not a connection or security property "
                                     f"(allowed: {', '.join(_ALLOWED_PREFIXES)}...)")
        out[key] = value
    return out


def client_config(bootstrap: str) -> dict[str, str]:
    """``{"bootstrap.servers": ..., **security}``: the start of every Kafka client config in the project."""
    return {"bootstrap.servers": bootstrap, **security_properties()}
