"""When to try a webhook again, when to give up, and when to disable a subscription. Pure: no I/O, no clock
(every time is passed in), randomness from an injected ``random.Random``.

**Schedule.** Exponential backoff with full jitter: the delay before retry *n* (n = 1, 2, ...) is drawn
uniformly from ``[0, ceiling(n)]`` with ``ceiling(n) = min(first * factor^(n-1), max)``. With the defaults
(5 s, x5, 2 h) the ceilings are 5 s, 25 s, ~2 min, ~10 min, ~52 min, then 2 h, 2 h, ... The schedule has
as many retries as fit while the ceilings add up to at most ``window`` (24 h): the last attempt comes at
most ``window`` (plus the attempts' own timeouts) after the first, whatever the jitter drew, and the
number of attempts is fixed (17 with the defaults). Full jitter spreads a burst of retries after an
outage over the whole interval instead of hitting the receiver again all at the same instant.

**Failure.** Anything but a 2xx answer within the timeout: a non-2xx status, a timeout, a connection
error. A 410 Gone is final: no retry, and the subscription is disabled at once.

**Disable rule.** A subscription is disabled with a notice when ``disable_after_failures`` deliveries in a
row were dead-lettered, or when it has been failing (no 2xx) for ``disable_after_s`` since its first
failure, or on a 410. Any 2xx resets both.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

OutcomeKind = Literal["delivered", "failed", "timeout", "connection_error", "gone"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    first_delay_s: float = 5.0
    factor: float = 5.0
    max_delay_s: float = 7200.0
    window_s: float = 86400.0
    timeout_s: float = 10.0
    disable_after_failures: int = 20
    disable_after_s: float = 5 * 86400.0

    def __post_init__(self) -> None:
        for name in ("first_delay_s", "max_delay_s", "window_s", "timeout_s", "disable_after_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"retry policy: {name} must be > 0, got {getattr(self, name)!r}")
        if self.factor < 1:
            raise ValueError(f"retry policy: factor must be >= 1, got {self.factor!r}")
        if self.disable_after_failures < 1:
            raise ValueError(f"retry policy: disable_after_failures must be >= 1, got {self.disable_after_failures}")

    def ceilings(self) -> tuple[float, ...]:
        """The most each retry waits, in order; they add up to at most ``window_s``."""
        out: list[float] = []
        total, ceiling = 0.0, self.first_delay_s
        while total + min(ceiling, self.max_delay_s) <= self.window_s:
            step = min(ceiling, self.max_delay_s)
            out.append(step)
            total += step
            ceiling *= self.factor
        return tuple(out)

    @property
    def max_attempts(self) -> int:
        return 1 + len(self.ceilings())

    def retry_delay_s(self, retry_no: int, rng: random.Random) -> float:
        """Full jitter: uniform in ``[0, ceiling(retry_no)]`` (retry_no counts from 1)."""
        ceilings = self.ceilings()
        if not 1 <= retry_no <= len(ceilings):
            raise ValueError(f"retry {retry_no} is outside the schedule (1..{len(ceilings)})")
        return rng.uniform(0.0, ceilings[retry_no - 1])


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one HTTP attempt came to."""

    kind: OutcomeKind
    status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "delivered"

    def describe(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status}" + (f": {self.error}" if self.error else "")
        return self.error or self.kind


def classify(status: int | None, error: str | None = None, *, timed_out: bool = False) -> Outcome:
    """An attempt's outcome from its status (None: no answer) and error text."""
    if timed_out:
        return Outcome("timeout", None, error or "timeout")
    if status is None:
        return Outcome("connection_error", None, error or "no answer")
    if 200 <= status < 300:
        return Outcome("delivered", status)
    if status == 410:
        return Outcome("gone", status, error)
    return Outcome("failed", status, error)


@dataclass(frozen=True, slots=True)
class Delivered:
    pass


@dataclass(frozen=True, slots=True)
class Retry:
    at_ms: int


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason_code: str  # RETRIES_EXHAUSTED | GONE
    reason: str


Decision = Delivered | Retry | GiveUp


def after_attempt(policy: RetryPolicy, attempts: int, outcome: Outcome, now_ms: int, rng: random.Random) -> Decision:
    """The delivery's next step after its ``attempts``-th attempt ended with ``outcome`` at ``now_ms``."""
    if outcome.ok:
        return Delivered()
    if outcome.kind == "gone":
        return GiveUp("GONE", f"the endpoint answered 410 Gone on attempt {attempts}: it does not want deliveries")
    if attempts >= policy.max_attempts:
        return GiveUp("RETRIES_EXHAUSTED", f"{attempts} attempts failed over the {policy.window_s:g}s retry window; "
                                           f"last: {outcome.describe()}")
    return Retry(now_ms + round(policy.retry_delay_s(attempts, rng) * 1000))


@dataclass(frozen=True, slots=True)
class Health:
    """A subscription's failure streak."""

    consecutive_failures: int = 0  # dead-lettered deliveries since the last 2xx
    failing_since_ms: int | None = None  # the first failed attempt since the last 2xx


def health_after(policy: RetryPolicy, health: Health, outcome: Outcome, gave_up: bool,
                 now_ms: int) -> tuple[Health, str | None]:
    """The streak after one attempt, and the reason to disable the subscription (None: keep it)."""
    if outcome.ok:
        return Health(), None
    since = health.failing_since_ms if health.failing_since_ms is not None else now_ms
    new = Health(health.consecutive_failures + (1 if gave_up else 0), since)
    if outcome.kind == "gone":
        return new, "the endpoint answered 410 Gone"
    if new.consecutive_failures >= policy.disable_after_failures:
        return new, (f"{new.consecutive_failures} deliveries in a row were dead-lettered "
                     f"(limit {policy.disable_after_failures}); last: {outcome.describe()}")
    if now_ms - since >= policy.disable_after_s * 1000:
        return new, (f"failing without a success for {(now_ms - since) / 1000:.0f}s "
                     f"(limit {policy.disable_after_s:g}s); last: {outcome.describe()}")
    return new, None
