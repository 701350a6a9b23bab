"""Server-side rate limits: per-minute request and token buckets, a short request window, quotas.

Rules and their sources:

- OpenAI's rate-limits guide measures limits in requests and tokens per minute (RPM, TPM) and
  describes `x-ratelimit-reset-*` as the time until the limit is back to its full state. A forum
  reply on OpenAI's community site explains a 12 ms reset as continuous refill. So each limit is a bucket of
  `capacity` = the per-minute limit that refills at `limit / 60` per second.
- The same guide warns that limits may be enforced over shorter periods: 60,000 RPM as 1,000
  requests per second, 60 RPM as 1 per second. With `request_window=w`, at most
  `ceil(rpm / 60 * w)` requests are accepted in any `w` seconds.
- OpenAI's help article on 429 errors says that failed requests count toward the per-minute
  limit: a rejected request takes one request from the bucket, or empties it when less than one
  is left, so a tight retry loop keeps itself locked out.
- Azure OpenAI documents that TPM is estimated on arrival from the prompt; here too a request's
  input tokens are charged when it is accepted.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

__all__ = ["Bucket", "LimitDecision", "LimitSnapshot", "QuotaBook", "RateLimits", "RequestWindow"]

LimitType = Literal["requests", "tokens"]

# Refill arithmetic accumulates float error; a request short of fitting by less than this fits.
_EPSILON = 1e-9


class Bucket:
    """A continuously refilling bucket of `capacity` units, refilled at `refill_rate` per second."""

    def __init__(self, limit_per_minute: int, now: float) -> None:
        if limit_per_minute < 1:
            raise ValueError(f"a per-minute limit must be at least 1, got {limit_per_minute}")
        self.capacity = float(limit_per_minute)
        self.refill_rate = limit_per_minute / 60.0
        self.level = self.capacity
        self._updated_at = now

    def refill(self, now: float) -> None:
        """Add what refilled since the last update, up to `capacity`."""
        elapsed = max(0.0, now - self._updated_at)
        self.level = min(self.capacity, self.level + elapsed * self.refill_rate)
        self._updated_at = max(self._updated_at, now)

    def fits(self, amount: float) -> bool:
        return self.level + _EPSILON >= amount

    def take(self, amount: float) -> None:
        """Remove `amount`; the level never goes below zero."""
        self.level = max(0.0, self.level - amount)

    def delay_until_fits(self, amount: float) -> float:
        """Seconds until `amount` fits, assuming nothing else is taken meanwhile."""
        return max(0.0, (amount - self.level) / self.refill_rate)

    def reset_delay(self) -> float:
        """Seconds until the bucket is full again, which OpenAI calls the reset."""
        return max(0.0, (self.capacity - self.level) / self.refill_rate)

    def remaining(self) -> int:
        return max(0, math.floor(self.level + _EPSILON))


class RequestWindow:
    """At most `max_requests` accepted requests within any `length` seconds (a sliding log)."""

    def __init__(self, max_requests: int, length: float) -> None:
        if max_requests < 1 or not length > 0:
            raise ValueError(f"a request window needs max_requests >= 1 and length > 0, got {max_requests}, {length}")
        self.max_requests = max_requests
        self.length = length
        self._accepted_at: deque[float] = deque()

    @classmethod
    def for_rpm(cls, rpm: int, length: float) -> RequestWindow:
        """Build the window that OpenAI's quantisation implies: `ceil(rpm / 60 * length)` requests."""
        return cls(max(1, math.ceil(rpm / 60.0 * length - _EPSILON)), length)

    def delay(self, now: float) -> float:
        """Seconds until one more request fits in the window."""
        while self._accepted_at and now - self._accepted_at[0] + _EPSILON >= self.length:
            self._accepted_at.popleft()
        if len(self._accepted_at) < self.max_requests:
            return 0.0
        return self._accepted_at[0] + self.length - now

    def record(self, now: float) -> None:
        self._accepted_at.append(now)


@dataclass(frozen=True)
class LimitSnapshot:
    """The values of the `x-ratelimit-*` headers; None where that limit is not configured."""

    limit_requests: int | None
    limit_tokens: int | None
    remaining_requests: int | None
    remaining_tokens: int | None
    reset_requests: float | None
    reset_tokens: float | None


@dataclass(frozen=True)
class LimitDecision:
    """Whether a request was accepted; for a rejection, which limit and the exact delay.

    `delay` is the time until the same request would be accepted if nothing else arrives. A
    request larger than the whole token capacity can never fit: `too_large` is True and `delay`
    is infinite. `used` and `limit` describe the binding limit as OpenAI's 429 message does.
    """

    accepted: bool
    snapshot: LimitSnapshot
    limit_type: LimitType | None = None
    delay: float = 0.0
    used: int = 0
    limit: int = 0
    requested: int = 0
    too_large: bool = False


class RateLimits:
    """The request and token limits of one organisation or one key.

    `rpm` or `tpm` None means that limit is not enforced. `request_window` is the short window in
    seconds (None disables it). `count_rejected` makes every rejected request take one request
    from the bucket, as OpenAI documents.
    """

    def __init__(
        self,
        rpm: int | None,
        tpm: int | None,
        now: float,
        *,
        request_window: float | None = None,
        count_rejected: bool = True,
    ) -> None:
        self.requests = Bucket(rpm, now) if rpm is not None else None
        self.tokens = Bucket(tpm, now) if tpm is not None else None
        self.window: RequestWindow | None = None
        if rpm is not None and request_window is not None:
            self.window = RequestWindow.for_rpm(rpm, request_window)
        self.count_rejected = count_rejected

    def admit(self, tokens: int, now: float) -> LimitDecision:
        """Accept a request of `tokens` input tokens and charge it, or reject it with the delay."""
        self._refill(now)
        window_delay = self.window.delay(now) if self.window is not None else 0.0
        requests_fit = self.requests is None or (self.requests.fits(1) and window_delay <= 0)
        tokens_fit = self.tokens is None or self.tokens.fits(tokens)
        if requests_fit and tokens_fit:
            self._charge(tokens, now)
            return LimitDecision(accepted=True, snapshot=self.snapshot(now))

        too_large = self.tokens is not None and tokens > self.tokens.capacity
        limit_type: LimitType = "tokens" if requests_fit or too_large else "requests"
        used, limit = self._usage(limit_type)
        requested = 1 if limit_type == "requests" else tokens
        self.record_failed_request(now)
        delay = math.inf if too_large else self._delay_until_fits(tokens, window_delay)
        return LimitDecision(False, self.snapshot(now), limit_type, delay, used, limit, requested, too_large)

    def record_failed_request(self, now: float) -> None:
        """Take one request from the bucket for a request that failed (429 or 400)."""
        self._refill(now)
        if self.requests is not None and self.count_rejected:
            self.requests.take(1)

    def snapshot(self, now: float) -> LimitSnapshot:
        self._refill(now)
        requests, tokens = self.requests, self.tokens
        return LimitSnapshot(
            limit_requests=int(requests.capacity) if requests else None,
            limit_tokens=int(tokens.capacity) if tokens else None,
            remaining_requests=requests.remaining() if requests else None,
            remaining_tokens=tokens.remaining() if tokens else None,
            reset_requests=requests.reset_delay() if requests else None,
            reset_tokens=tokens.reset_delay() if tokens else None,
        )

    def _refill(self, now: float) -> None:
        if self.requests is not None:
            self.requests.refill(now)
        if self.tokens is not None:
            self.tokens.refill(now)

    def _charge(self, tokens: int, now: float) -> None:
        if self.requests is not None:
            self.requests.take(1)
        if self.window is not None:
            self.window.record(now)
        if self.tokens is not None:
            self.tokens.take(tokens)

    def _usage(self, limit_type: LimitType) -> tuple[int, int]:
        bucket = self.requests if limit_type == "requests" else self.tokens
        assert bucket is not None
        return round(bucket.capacity - bucket.level), int(bucket.capacity)

    def _delay_until_fits(self, tokens: int, window_delay: float) -> float:
        delays = [max(0.0, window_delay)]
        if self.requests is not None:
            delays.append(self.requests.delay_until_fits(1))
        if self.tokens is not None:
            delays.append(self.tokens.delay_until_fits(tokens))
        return max(delays)


class QuotaBook:
    """Per-key billing quota: a token budget per key, and a switch that a test flips at run time.

    OpenAI responds with 429 `insufficient_quota` once a key's organisation has no credit left,
    and retrying does not help. A key is out of quota once its accepted tokens reach `budget`
    (the request that crosses the budget is still served, as billing lags usage).
    """

    def __init__(self, budget: int | None) -> None:
        self.budget = budget
        self._used: dict[str, int] = {}
        self._switched_off: set[str] = set()

    def is_exhausted(self, key: str) -> bool:
        if key in self._switched_off:
            return True
        return self.budget is not None and self._used.get(key, 0) >= self.budget

    def record(self, key: str, tokens: int) -> None:
        self._used[key] = self._used.get(key, 0) + tokens

    def set_exhausted(self, key: str, exhausted: bool) -> None:
        if exhausted:
            self._switched_off.add(key)
        else:
            self._switched_off.discard(key)
