"""A client-side rate limiter that paces itself from the server's `x-ratelimit-*` headers.

Two buckets refill continuously: one of requests and one of tokens. `acquire(tokens=n)` waits, in
strict FIFO order, until one request and `n` tokens are available, takes them, and returns a
`Ticket`. After the response, `settle(ticket, ...)` feeds back what the server reported:

- The headers re-sync each bucket's level, limit and refill rate. The server's `remaining` does
  not yet count the requests sent after the one that carried the headers, so the tickets issued
  after it and still in flight are subtracted. Tickets settled earlier were counted by the server.
- `tokens_used` (the response's `usage.prompt_tokens`) replaces the estimate that was charged.
- A 429 pauses every waiter until the server's retry hint has passed, bounded by `max_pause`.

Bursts: requests are spaced out, at most `limit / 60 * request_window` in any
`request_window` seconds, because OpenAI documents that per-minute limits may be enforced over
shorter windows (60,000 RPM as 1,000 requests per second). The token bucket spends whatever the
server reports as remaining, up to a full minute of tokens. If the server rejects such a burst
with 429s of type `tokens`, the burst allowance halves (down to `min_token_window` seconds of
tokens) and stays there. A 429 of type `requests` while requests remain means the short window
was crossed, so request spacing widens by a step, and narrows again after a quiet stretch.

Unknown limits: unless both limits are configured, the first acquire is a probe, and every later
one waits until a response arrives. A bucket whose limit neither the configuration nor any response
gives stays unlimited, so a server that sends no rate-limit headers is paced by 429s alone.

Why not aiolimiter: `AsyncLimiter` (1.3) wakes waiters smallest amount first (a large request can
starve), schedules with the event loop's own clock (no injected `Clock`), and has no way to set
the level from a server's report. backoff has no limiter. So the buckets are implemented here.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from embedlimit._clock import Clock, LoopClock
from embedlimit._errors import CapacityError, ConfigurationError
from embedlimit._headers import RateLimitInfo

__all__ = ["LimiterStatistics", "RateLimiter", "Ticket"]

logger = logging.getLogger(__name__)

LimitType = Literal["requests", "tokens"]

# Refill arithmetic accumulates float error; an amount short of fitting by less than this fits.
_EPSILON = 1e-9

# Resets arrive rounded: OpenAI to the millisecond, Azure to whole seconds. A refill period
# derived from a reset is trusted only when this much rounding cannot explain the difference.
_RESET_ROUNDING = 1.0

# A 429 from the server's short request window that recurs within `_MARGIN_RECUR_REQUESTS`
# requests stretches request spacing by `_MARGIN_STEP`, up to the maximum. At the maximum, a
# request-bound run reaches 1 / 1.1 = 91% of the limit. After `_MARGIN_DECAY_REQUESTS` requests
# without a widening, the margin narrows by one step again.
_MARGIN_STEP = 0.01
_MAX_MARGIN = 0.1
_MARGIN_RECUR_REQUESTS = 100
_MARGIN_DECAY_REQUESTS = 500


@dataclass(frozen=True)
class Ticket:
    """Permission to send one request: `tokens` charged at clock time `issued_at`.

    `sequence` counts tickets from 1 in the order they were issued. `probe` marks the request
    sent while the limits were still unknown.
    """

    sequence: int
    tokens: int
    issued_at: float
    probe: bool = False


@dataclass(frozen=True)
class LimiterStatistics:
    """Live state of a `RateLimiter`; None for a bucket whose limit is unknown or absent.

    Levels may be negative while in-flight requests are charged beyond what the server reported.
    Rates are per second. `burst_requests` is the most requests started in any request window,
    and `request_margin` the current stretch of request spacing. `pause_deadline` is a clock
    time, None when no pause is in force.
    """

    limit_requests: int | None
    limit_tokens: int | None
    level_requests: float | None
    level_tokens: float | None
    rate_requests: float | None
    rate_tokens: float | None
    burst_requests: int | None
    burst_tokens: float | None
    request_margin: float
    waiters: int
    waiting_tokens: int
    in_flight: int
    in_flight_tokens: int
    issued: int
    settled: int
    probing: bool
    pause_deadline: float | None
    pause_delay: float
    rate_limited: int
    rate_limited_requests: int
    rate_limited_tokens: int
    token_window_halvings: int
    tokens_charged: int
    tokens_corrected: int


class _Bucket:
    """A continuously refilled bucket of requests or tokens; unlimited while `limit` is None.

    `capacity` is the most the bucket holds. It equals `limit` for requests. For tokens it is the
    burst allowance: `limit * burst_fraction`, never below `floor`. `period` is how many seconds
    an empty bucket takes to refill to `limit` (60 for a per-minute limit).
    """

    def __init__(self, name: LimitType, configured_limit: int | None) -> None:
        self.name = name
        self.configured_limit = configured_limit
        self.limit = configured_limit
        self.period = 60.0
        self.burst_fraction = 1.0
        self.floor = 0.0
        self.level = float(configured_limit or 0)
        self._updated_at: float | None = None

    @property
    def rate(self) -> float:
        return (self.limit or 0) / self.period

    @property
    def capacity(self) -> float:
        if self.limit is None:
            return math.inf
        return min(self.limit, max(self.limit * self.burst_fraction, self.floor))

    def refill(self, now: float) -> None:
        if self._updated_at is not None and self.limit is not None:
            elapsed = max(0.0, now - self._updated_at)
            self.level = min(self.capacity, self.level + elapsed * self.rate)
        self._updated_at = now if self._updated_at is None else max(self._updated_at, now)

    def delay(self, amount: float) -> float:
        """Seconds until `amount` fits, if nothing else is taken meanwhile (after `refill`)."""
        if self.limit is None or self.level + _EPSILON * max(1.0, amount) >= amount:
            return 0.0
        return (amount - self.level) / self.rate

    def take(self, amount: float) -> None:
        if self.limit is not None:
            self.level -= amount

    def set_level(self, level: float) -> None:
        if self.limit is not None:
            self.level = min(self.capacity, level)

    def set_limit(self, reported: int) -> bool:
        """Apply the server's limit, capped by the configured one; return whether it changed."""
        limit = reported if self.configured_limit is None else min(reported, self.configured_limit)
        if limit < 1 or limit == self.limit:
            return False
        if self.limit is None:
            self.level = float(limit)
        self.limit = limit
        self.level = min(self.level, self.capacity)
        return True

    def update_period(self, remaining: int | None, reset: float | None) -> None:
        """Re-derive the refill period from one report, when the report is precise enough.

        A bucket that is `used = limit - remaining` below full and refills in `reset` seconds has
        a period of `reset * limit / used`. Counts are floored and resets rounded, so the period
        changes only when even the most generous reading of the rounding cannot match it.
        """
        if self.limit is None or remaining is None or reset is None or reset <= 0:
            return
        used = self.limit - remaining
        if used < 2:
            return
        shortest = max(0.0, reset - _RESET_ROUNDING) * self.limit / (used + 1)
        longest = (reset + _RESET_ROUNDING) * self.limit / (used - 1)
        if shortest <= self.period <= longest:
            return
        period = min(3600.0, max(0.001, reset * self.limit / used))
        logger.info("%s refill period re-derived from headers: %.3f s -> %.3f s", self.name, self.period, period)
        self.period = period


class _RequestPacer:
    """Bounds request bursts: at most `burst` requests start in any `request_window` seconds.

    Two rules apply together. A sliding log admits `burst` requests per window stretched by
    `margin`, so requests that reach the server up to `margin * request_window` closer together
    than they were sent still fit its window. Within that, requests are spaced `interval` apart,
    because the server counts arrival times and a burst sent at once reaches it spread over
    however long sending took. The spacing forgives a request that starts up to `slack` late,
    so timer lateness does not slow the requests after it. With `slack` at least half an
    interval, consecutive requests start at least half an interval apart, unless the margin
    is wider than that.
    """

    def __init__(self) -> None:
        self.burst = 0
        self.length = 0.0
        self.interval = 0.0
        self.slack = 0.0
        self._due = -math.inf
        self._issued_at: deque[float] = deque()

    def resize(self, limit: int | None, period: float, request_window: float, margin: float) -> None:
        if limit is None:
            self.burst = 0
            self.length = self.interval = self.slack = 0.0
            return
        rate = limit / period
        self.burst = max(1, math.floor(rate * request_window + _EPSILON))
        self.length = self.burst / rate * (1.0 + margin)
        self.interval = 1.0 / rate
        self.slack = max(self.interval / 2, margin * request_window)

    def delay(self, now: float) -> float:
        if self.burst == 0:
            return 0.0
        while self._issued_at and now - self._issued_at[0] + _EPSILON >= self.length:
            self._issued_at.popleft()
        window_delay = 0.0
        if len(self._issued_at) >= self.burst:
            window_delay = self._issued_at[-self.burst] + self.length - now
        return max(window_delay, self._due - now, 0.0)

    def record(self, now: float) -> None:
        self._due = max(self._due, now - self.slack) + self.interval
        self._issued_at.append(now)
        while len(self._issued_at) > max(self.burst, 1):
            self._issued_at.popleft()


@dataclass
class _Waiter:
    tokens: int
    turn: asyncio.Future[None]
    error: BaseException | None = None


class RateLimiter:
    """Dual token bucket, requests and tokens, synced from the server's rate-limit headers.

    `requests_per_minute` and `tokens_per_minute` are optional starting limits. A configured limit
    is also a ceiling: a larger `limit` header does not raise it. `max_pause` bounds the pause
    after a 429, and `default_pause` is the pause when the 429 carries no retry hint.
    `request_window` is the short window in seconds that bounds request bursts, and
    `request_margin` the fraction by which request spacing is stretched to absorb timer and
    network jitter (it costs that fraction of throughput when the request limit binds).
    `min_token_window` is the smallest token burst allowance, in seconds of the token limit, that
    429s of type `tokens` can teach. All time comes from `clock` (default `LoopClock()`).
    """

    def __init__(
        self,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        *,
        clock: Clock | None = None,
        max_pause: float = 60.0,
        request_window: float = 1.0,
        request_margin: float = 0.02,
        default_pause: float = 1.0,
        min_token_window: float = 1.0,
    ) -> None:
        _check_limit("requests_per_minute", requests_per_minute)
        _check_limit("tokens_per_minute", tokens_per_minute)
        _check_delay("max_pause", max_pause, allow_zero=False)
        _check_delay("request_window", request_window, allow_zero=False)
        _check_delay("default_pause", default_pause, allow_zero=True)
        if not (isinstance(request_margin, int | float) and 0.0 <= request_margin <= 1.0):
            raise ConfigurationError(f"request_margin must be a fraction from 0 to 1, got {request_margin!r}")
        _check_delay("min_token_window", min_token_window, allow_zero=False)
        if default_pause > max_pause:
            raise ConfigurationError(
                f"default_pause {default_pause} s exceeds max_pause {max_pause} s; lower default_pause."
            )

        self._clock: Clock = clock if clock is not None else LoopClock()
        self.max_pause = float(max_pause)
        self.request_window = float(request_window)
        self.request_margin = float(request_margin)
        self._configured_margin = self.request_margin
        self.default_pause = float(default_pause)
        self.min_token_window = float(min_token_window)

        self._requests = _Bucket("requests", requests_per_minute)
        self._tokens = _Bucket("tokens", tokens_per_minute)
        self._pacer = _RequestPacer()
        self._resize()

        self._waiters: deque[_Waiter] = deque()
        self._changed: asyncio.Future[None] | None = None
        self._in_flight: dict[int, Ticket] = {}
        self._issued = 0
        self._settled = 0
        self._synced_sequence = 0
        self._burst_sequence = 0
        self._margin_sequence = 0
        self._window_429_issued = -_MARGIN_RECUR_REQUESTS - 1
        self._largest_tokens = 0
        self._need_probe = requests_per_minute is None or tokens_per_minute is None
        self._probe: Ticket | None = None
        self._pause_deadline = -math.inf
        self._rate_limited = {"requests": 0, "tokens": 0, None: 0}
        self._token_window_halvings = 0
        self._tokens_charged = 0
        self._tokens_corrected = 0

    # Acquiring.

    async def acquire(self, tokens: int = 0) -> Ticket:
        """Wait in FIFO order until one request and `tokens` tokens are available, then take them.

        Raises CapacityError at once when `tokens` exceeds the token limit, or later when the
        limit shrinks below it while this call waits.
        """
        self._check_amount(tokens)
        waiter = _Waiter(tokens, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            waiter.turn.set_result(None)
        try:
            return await self._wait_turn(waiter)
        except BaseException:
            self._discard(waiter)
            raise

    async def _wait_turn(self, waiter: _Waiter) -> Ticket:
        while True:
            await waiter.turn
            if waiter.error is not None:
                raise waiter.error

            delay = self._delay(waiter.tokens)
            if delay == 0.0:
                return self._issue(waiter)
            await self._wait_for_change(delay)

    def _delay(self, tokens: int) -> float | None:
        """Return 0.0 when the head may go now, the seconds to wait, or None to wait for a response."""
        now = self._clock.now()
        if now < self._pause_deadline:
            return self._pause_deadline - now
        if self._need_probe:
            return None if self._probe is not None else 0.0

        self._requests.refill(now)
        self._tokens.refill(now)
        delay = max(self._pacer.delay(now), self._requests.delay(1), self._tokens.delay(tokens))
        return 0.0 if delay <= _EPSILON else delay

    async def _wait_for_change(self, delay: float | None) -> None:
        changed = self._changed = asyncio.get_running_loop().create_future()
        if delay is None:
            await changed
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(delay))
        try:
            await asyncio.wait((changed, sleeper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()

    def _issue(self, waiter: _Waiter) -> Ticket:
        now = self._clock.now()
        self._waiters.popleft()
        self._requests.take(1)
        self._tokens.take(waiter.tokens)
        self._pacer.record(now)

        self._issued += 1
        probe = self._need_probe
        ticket = Ticket(self._issued, waiter.tokens, now, probe)
        self._in_flight[ticket.sequence] = ticket
        self._tokens_charged += waiter.tokens
        if probe:
            self._probe = ticket
        self._narrow_request_margin()
        self._promote_head()
        return ticket

    def _discard(self, waiter: _Waiter) -> None:
        was_head = bool(self._waiters) and self._waiters[0] is waiter
        try:
            self._waiters.remove(waiter)
        except ValueError:
            return
        if was_head:
            self._promote_head()

    def _promote_head(self) -> None:
        if self._waiters and not self._waiters[0].turn.done():
            self._waiters[0].turn.set_result(None)

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    def _check_amount(self, tokens: int) -> None:
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise ValueError(f"tokens must be a whole number >= 0, got {tokens!r}")
        limit = self._tokens.limit
        if limit is not None and tokens > limit:
            raise CapacityError(
                f"a request of {tokens} tokens exceeds the token limit of {limit} tokens per minute, "
                "so it can never be sent; split its inputs over smaller requests.",
                amount=tokens,
                capacity=limit,
            )
        if tokens > self._largest_tokens:
            self._largest_tokens = tokens
            self._tokens.floor = max(self._tokens.floor, float(tokens))

    # Settling.

    def settle(
        self,
        ticket: Ticket,
        info: RateLimitInfo | None = None,
        tokens_used: int | None = None,
        status: int | None = None,
        *,
        limit_type: LimitType | None = None,
    ) -> None:
        """Record the outcome of a ticket's request, once per ticket.

        Pass the response's `info` and HTTP `status` for any response, or neither when the request
        failed without one. `tokens_used` replaces the charged estimate. A 429 pauses every
        waiter; `limit_type` is the bucket the server named (inferred from `info` when None).
        An `insufficient_quota` 429 pauses too, which is harmless because it stops the run.
        Settling a ticket twice logs a warning and changes nothing.
        """
        if self._in_flight.pop(ticket.sequence, None) is None:
            logger.warning("ignoring a second settle of ticket %d", ticket.sequence)
            return
        now = self._clock.now()
        self._settled += 1
        self._requests.refill(now)
        self._tokens.refill(now)

        self._correct_usage(ticket, tokens_used)
        if info is not None:
            self._sync(ticket, info)
        if self._probe is not None and ticket.sequence == self._probe.sequence:
            self._probe = None
        if status is not None:
            self._need_probe = False
        if status == 429:
            self._pause(ticket, info, limit_type, now)

        self._fail_oversized_waiters()
        self._notify()

    def _correct_usage(self, ticket: Ticket, tokens_used: int | None) -> None:
        if tokens_used is None or tokens_used < 0:
            return
        correction = tokens_used - ticket.tokens
        self._tokens_corrected += correction
        # A re-sync from a later ticket's headers already counted this request at its true size.
        if ticket.sequence > self._synced_sequence:
            self._tokens.set_level(self._tokens.level - correction)

    def _sync(self, ticket: Ticket, info: RateLimitInfo) -> None:
        reports = (
            (self._requests, info.limit_requests, info.remaining_requests, info.reset_requests),
            (self._tokens, info.limit_tokens, info.remaining_tokens, info.reset_tokens),
        )
        for bucket, limit, remaining, reset in reports:
            self._sync_limit(bucket, limit, remaining)
            bucket.update_period(remaining, reset)
        self._resize()

        if ticket.sequence < self._synced_sequence:
            return  # a later ticket's headers already gave a fresher level
        later = [other for other in self._in_flight.values() if other.sequence > ticket.sequence]
        if info.remaining_requests is not None:
            self._requests.set_level(info.remaining_requests - len(later))
        if info.remaining_tokens is not None:
            self._tokens.set_level(info.remaining_tokens - sum(other.tokens for other in later))
        self._synced_sequence = ticket.sequence

    def _sync_limit(self, bucket: _Bucket, limit: int | None, remaining: int | None) -> None:
        if limit is None and remaining is not None and bucket.configured_limit is None:
            # NOTE: Azure OpenAI may send remaining without limit. Until a limit header arrives,
            # the largest remaining seen is a guessed limit that refills over 60 s.
            limit = max(remaining, bucket.limit or 0)
        if limit is not None and bucket.set_limit(limit):
            logger.info("%s limit set to %d per minute from the response headers", bucket.name, bucket.limit)

    def _pause(self, ticket: Ticket, info: RateLimitInfo | None, limit_type: LimitType | None, now: float) -> None:
        kind = limit_type or _infer_limit_type(ticket, info)
        self._rate_limited[kind] += 1
        hint = info.retry_after if info is not None else None
        delay = min(self.max_pause, hint if hint is not None else self.default_pause)
        self._pause_deadline = max(self._pause_deadline, now + delay)

        # The server found this bucket short; without a remaining header, assume it is empty.
        reports = (
            (self._requests, info.remaining_requests if info is not None else None),
            (self._tokens, info.remaining_tokens if info is not None else None),
        )
        for bucket, remaining in reports:
            if kind in (None, bucket.name) and remaining is None:
                bucket.set_level(min(bucket.level, 0.0))
        if kind == "tokens":
            self._learn_token_window(ticket)
        elif kind == "requests" and info is not None and (info.remaining_requests or 0) > 0:
            self._widen_request_margin(ticket)
        logger.info(
            "HTTP 429 (%s) for ticket %d: pausing all requests for %.3f s", kind or "unknown", ticket.sequence, delay
        )

    def _learn_token_window(self, ticket: Ticket) -> None:
        """Halve the token burst allowance, once per burst sent under the previous allowance."""
        bucket = self._tokens
        if bucket.limit is None or ticket.sequence <= self._burst_sequence:
            return
        bucket.floor = max(bucket.floor, bucket.limit * self.min_token_window / 60.0)
        before = bucket.capacity
        bucket.burst_fraction = max(bucket.burst_fraction / 2, bucket.floor / bucket.limit)
        if bucket.capacity < before:
            self._token_window_halvings += 1
            bucket.set_level(bucket.level)
            logger.info("token burst allowance lowered from %.0f to %.0f tokens", before, bucket.capacity)
        self._burst_sequence = self._issued

    def _widen_request_margin(self, ticket: Ticket) -> None:
        """Stretch request spacing after a 429 of type `requests` with requests still remaining.

        Such a 429 comes from the server's short window: requests reached it closer together
        than they were sent. A single one is usually a passing delay, so the margin grows only
        when a second one follows within `_MARGIN_RECUR_REQUESTS` requests. It grows by
        `_MARGIN_STEP`, once per ticket issued under the previous margin, up to `_MAX_MARGIN`,
        and `_narrow_request_margin` undoes it slowly.
        """
        recurred = self._issued - self._window_429_issued <= _MARGIN_RECUR_REQUESTS
        self._window_429_issued = self._issued
        if not recurred or ticket.sequence <= self._margin_sequence or self.request_margin >= _MAX_MARGIN:
            return
        before = self.request_margin
        self.request_margin = min(_MAX_MARGIN, self.request_margin + _MARGIN_STEP)
        self._margin_sequence = self._issued
        self._resize()
        logger.info(
            "request margin widened from %.3f to %.3f after a 429 of type requests", before, self.request_margin
        )

    def _narrow_request_margin(self) -> None:
        if self.request_margin <= self._configured_margin:
            return
        if self._issued - self._margin_sequence < _MARGIN_DECAY_REQUESTS:
            return
        self.request_margin = max(self._configured_margin, self.request_margin - _MARGIN_STEP)
        self._margin_sequence = self._issued
        self._resize()

    def _fail_oversized_waiters(self) -> None:
        limit = self._tokens.limit
        if limit is None:
            return
        for waiter in self._waiters:
            if waiter.tokens > limit and waiter.error is None:
                waiter.error = CapacityError(
                    f"a request of {waiter.tokens} tokens exceeds the token limit, lowered to {limit} "
                    "tokens per minute by the server, so it can never be sent; split its inputs.",
                    amount=waiter.tokens,
                    capacity=limit,
                )
                if not waiter.turn.done():
                    waiter.turn.set_result(None)

    def _resize(self) -> None:
        self._pacer.resize(self._requests.limit, self._requests.period, self.request_window, self.request_margin)

    # Reporting.

    def headroom(self) -> float:
        """Return the fraction, 0 to 1, of the tightest bucket still free after queued requests.

        0 while paused or while the probe is in flight, 1 for unlimited buckets.
        """
        now = self._clock.now()
        if now < self._pause_deadline or self._probe is not None:
            return 0.0
        self._requests.refill(now)
        self._tokens.refill(now)
        demands = ((self._requests, len(self._waiters)), (self._tokens, self._waiting_tokens()))
        fractions = [
            (bucket.level - demand) / bucket.capacity
            for bucket, demand in demands
            if bucket.limit is not None and bucket.capacity > 0
        ]
        if not fractions:
            return 1.0
        return min(1.0, max(0.0, min(fractions)))

    def statistics(self) -> LimiterStatistics:
        """Return a snapshot of levels, limits, rates, queue, pause and 429 counts."""
        now = self._clock.now()
        self._requests.refill(now)
        self._tokens.refill(now)
        requests, tokens = self._requests, self._tokens
        paused = now < self._pause_deadline
        return LimiterStatistics(
            limit_requests=requests.limit,
            limit_tokens=tokens.limit,
            level_requests=requests.level if requests.limit is not None else None,
            level_tokens=tokens.level if tokens.limit is not None else None,
            rate_requests=requests.rate if requests.limit is not None else None,
            rate_tokens=tokens.rate if tokens.limit is not None else None,
            burst_requests=self._pacer.burst or None,
            burst_tokens=tokens.capacity if tokens.limit is not None else None,
            request_margin=self.request_margin,
            waiters=len(self._waiters),
            waiting_tokens=self._waiting_tokens(),
            in_flight=len(self._in_flight),
            in_flight_tokens=sum(ticket.tokens for ticket in self._in_flight.values()),
            issued=self._issued,
            settled=self._settled,
            probing=self._need_probe,
            pause_deadline=self._pause_deadline if paused else None,
            pause_delay=self._pause_deadline - now if paused else 0.0,
            rate_limited=sum(self._rate_limited.values()),
            rate_limited_requests=self._rate_limited["requests"],
            rate_limited_tokens=self._rate_limited["tokens"],
            token_window_halvings=self._token_window_halvings,
            tokens_charged=self._tokens_charged,
            tokens_corrected=self._tokens_corrected,
        )

    def _waiting_tokens(self) -> int:
        return sum(waiter.tokens for waiter in self._waiters)

    def __repr__(self) -> str:
        stats = self.statistics()
        buckets = [
            _describe_bucket("requests", stats.level_requests, stats.limit_requests, stats.rate_requests),
            _describe_bucket("tokens", stats.level_tokens, stats.limit_tokens, stats.rate_tokens),
        ]
        state = [
            *buckets,
            f"waiters={stats.waiters}",
            f"in_flight={stats.in_flight}",
            f"429s={stats.rate_limited}",
        ]
        if stats.probing:
            state.append("probing")
        if stats.pause_deadline is not None:
            state.append(f"paused {stats.pause_delay:.3f}s")
        return f"<RateLimiter {' '.join(state)}>"


def _describe_bucket(name: str, level: float | None, limit: int | None, rate: float | None) -> str:
    if limit is None or level is None or rate is None:
        return f"{name}=unlimited"
    return f"{name}={level:.0f}/{limit} (+{rate:.4g}/s)"


def _infer_limit_type(ticket: Ticket, info: RateLimitInfo | None) -> LimitType | None:
    if info is None:
        return None
    if info.remaining_tokens is not None and info.remaining_tokens < ticket.tokens:
        return "tokens"
    if info.remaining_requests == 0:
        return "requests"
    return None


def _check_limit(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a whole number >= 1 or None, got {value!r}")


def _check_delay(name: str, value: float, *, allow_zero: bool) -> None:
    valid = isinstance(value, int | float) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not valid:
        rule = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be a finite number of seconds {rule}, got {value!r}")
