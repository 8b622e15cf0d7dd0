"""The retry schedule, its jitter and bounds, what counts as a failure, and the disable rule. Pure: fixed
instants, seeded randomness."""

from __future__ import annotations

import random

import pytest

from webhooks.delivery_policy import (
    Delivered,
    GiveUp,
    Health,
    Retry,
    RetryPolicy,
    after_attempt,
    classify,
    health_after,
)

T0 = 1_780_293_600_000
DEFAULT = RetryPolicy()
SHORT = RetryPolicy(first_delay_s=0.2, factor=2, max_delay_s=1, window_s=3, timeout_s=1, disable_after_failures=2,
                    disable_after_s=60)


def test_the_default_schedule_backs_off_exponentially_within_a_day() -> None:
    ceilings = DEFAULT.ceilings()
    assert ceilings[:6] == (5, 25, 125, 625, 3125, 7200)  # ~5 s, 30 s, 2 min, 10 min, 52 min, then capped at 2 h
    assert set(ceilings[5:]) == {7200}
    assert sum(ceilings) <= 86400 < sum(ceilings) + 7200  # as many retries as fit in the window
    assert DEFAULT.max_attempts == 17


def test_a_short_schedule_for_tests() -> None:
    assert SHORT.ceilings() == (0.2, 0.4, 0.8, 1.0)
    assert SHORT.max_attempts == 5


@pytest.mark.parametrize("policy", [DEFAULT, SHORT, RetryPolicy(first_delay_s=30, factor=1, max_delay_s=30,
                                                                window_s=1800)])
def test_full_jitter_stays_within_each_ceiling_and_the_window(policy: RetryPolicy) -> None:
    rng = random.Random(42)
    ceilings = policy.ceilings()
    for _ in range(500):
        delays = [policy.retry_delay_s(n, rng) for n in range(1, len(ceilings) + 1)]
        assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
        assert sum(delays) <= policy.window_s
    draws = [DEFAULT.retry_delay_s(4, rng) for _ in range(2000)]
    assert min(draws) < 0.05 * 625 and max(draws) > 0.95 * 625  # full jitter: the whole interval, not a band


def test_the_jitter_is_reproducible_with_a_seed() -> None:
    a = [DEFAULT.retry_delay_s(n, random.Random(7)) for n in range(1, 6)]
    b = [DEFAULT.retry_delay_s(n, random.Random(7)) for n in range(1, 6)]
    assert a == b


def test_a_retry_outside_the_schedule_is_an_error() -> None:
    with pytest.raises(ValueError, match="outside the schedule"):
        SHORT.retry_delay_s(5, random.Random(1))


@pytest.mark.parametrize(("field", "value"), [("first_delay_s", 0), ("window_s", -1), ("factor", 0.5),
                                              ("disable_after_failures", 0), ("timeout_s", 0)])
def test_nonsense_settings_are_refused_with_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**{field: value})


@pytest.mark.parametrize(("status", "error", "timed_out", "kind"), [
    (200, None, False, "delivered"), (204, None, False, "delivered"), (299, None, False, "delivered"),
    (301, None, False, "failed"), (400, None, False, "failed"), (429, None, False, "failed"),
    (500, None, False, "failed"), (503, None, False, "failed"), (410, None, False, "gone"),
    (None, "connection refused", False, "connection_error"), (None, "timeout after 1s", True, "timeout"),
])
def test_what_counts_as_a_failure(status: int | None, error: str | None, timed_out: bool, kind: str) -> None:
    outcome = classify(status, error, timed_out=timed_out)
    assert outcome.kind == kind
    assert outcome.ok is (kind == "delivered")


def test_a_failure_is_retried_at_a_jittered_time_then_given_up() -> None:
    rng = random.Random(3)
    failed = classify(503, "Service Unavailable")
    for attempts, ceiling in enumerate(SHORT.ceilings(), start=1):
        decision = after_attempt(SHORT, attempts, failed, T0, rng)
        assert isinstance(decision, Retry) and T0 <= decision.at_ms <= T0 + ceiling * 1000
    last = after_attempt(SHORT, SHORT.max_attempts, failed, T0, rng)
    assert isinstance(last, GiveUp) and last.reason_code == "RETRIES_EXHAUSTED"
    assert "5 attempts" in last.reason and "HTTP 503: Service Unavailable" in last.reason
    assert after_attempt(SHORT, 1, classify(200), T0, rng) == Delivered()
    assert after_attempt(SHORT, SHORT.max_attempts, classify(201), T0, rng) == Delivered()


def test_timeouts_and_connection_errors_are_retried_like_errors() -> None:
    for outcome in (classify(None, "timeout", timed_out=True), classify(None, "connection refused")):
        assert isinstance(after_attempt(SHORT, 1, outcome, T0, random.Random(1)), Retry)


def test_410_gone_is_final_at_once() -> None:
    decision = after_attempt(SHORT, 1, classify(410), T0, random.Random(1))
    assert isinstance(decision, GiveUp) and decision.reason_code == "GONE"
    health, disable = health_after(SHORT, Health(), classify(410), gave_up=True, now_ms=T0)
    assert disable == "the endpoint answered 410 Gone" and health.consecutive_failures == 1


def test_a_subscription_is_disabled_after_n_dead_letters_in_a_row() -> None:
    failed = classify(500)
    health, disable = health_after(SHORT, Health(), failed, gave_up=False, now_ms=T0)
    assert health == Health(0, T0) and disable is None  # a failed attempt starts the streak's clock
    health, disable = health_after(SHORT, health, failed, gave_up=True, now_ms=T0 + 1000)
    assert health == Health(1, T0) and disable is None
    health, disable = health_after(SHORT, health, failed, gave_up=True, now_ms=T0 + 2000)
    assert health == Health(2, T0)
    assert disable is not None and "2 deliveries in a row were dead-lettered (limit 2)" in disable


def test_a_subscription_is_disabled_after_failing_for_too_long() -> None:
    health, disable = health_after(SHORT, Health(0, T0), classify(None, "refused"), gave_up=False,
                                   now_ms=T0 + 59_999)
    assert disable is None
    health, disable = health_after(SHORT, health, classify(None, "refused"), gave_up=False, now_ms=T0 + 60_000)
    assert disable is not None and "failing without a success for 60s" in disable


def test_a_success_resets_the_streak() -> None:
    assert health_after(SHORT, Health(1, T0), classify(200), gave_up=False, now_ms=T0 + 5) == (Health(), None)
