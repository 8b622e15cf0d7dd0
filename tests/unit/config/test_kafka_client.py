"""``KUAILV_KAFKA_SECURITY`` reaches every Kafka client's configuration, and only security properties pass."""

from __future__ import annotations

import pytest

from commands.relay import producer_config
from config.kafka_client import KafkaSecurityError, client_config, security_properties
from infra.services import quiet_client_config
from streams.runtime.batch_loop import consumer_config

SASL = ("security.protocol=SASL_SSL; sasl.mechanisms=SCRAM-SHA-512;sasl.username=kuailv;sasl.password=p=w;"
        "ssl.ca.location=/etc/kuailv/ca.pem")


def test_properties_are_parsed_and_values_may_hold_equals_signs() -> None:
    assert security_properties(SASL) == {"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
                                         "sasl.username": "kuailv", "sasl.password": "p=w",
                                         "ssl.ca.location": "/etc/kuailv/ca.pem"}
    assert security_properties("") == {}


@pytest.mark.parametrize("bad", ["acks=0", "enable.idempotence=false", "security.protocol", "=x"])
def test_anything_but_connection_security_is_refused(bad: str) -> None:
    with pytest.raises(KafkaSecurityError, match="KUAILV_KAFKA_SECURITY"):
        security_properties(bad)


def test_every_client_config_carries_the_security_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUAILV_KAFKA_SECURITY", SASL)
    for config in (client_config("k:9093"), consumer_config("k:9093", "g", "c"), producer_config("k:9093"),
                   quiet_client_config("k:9093")):
        assert config["bootstrap.servers"] == "k:9093"
        assert config["security.protocol"] == "SASL_SSL" and config["sasl.password"] == "p=w"
    assert producer_config("k:9093")["acks"] == "all"  # the producer's own guarantees are untouched
