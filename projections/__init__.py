"""Pure domain logic: ``fold(state, event) -> state`` per projection.

No I/O, no clock, no Kafka/Redis/Flink imports. Workers, Flink jobs
and replay all call these functions, so they agree on the same log.
"""
