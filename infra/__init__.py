"""The local stack: one Kafka (KRaft) broker, Redis and InfluxDB 1.x per profile.

``python -m infra.stack start --profile test`` from a shell, or
``infra.stack.ensure_started("test")`` from a pytest fixture. See infra/README.md.
"""
