"""Tests for RateLimiter on a FakeClock: pacing, FIFO, header sync, pauses, learning, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math

import pytest

from embedlimit._clock import FakeClock
from embedlimit._errors import CapacityError, ConfigurationError
from embedlimit._headers import RateLimitInfo
from embedlimit._limiter import RateLimiter, Ticket

pytestmark = pytest.mark.timeout(10)


async def yield_to_loop(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def start_acquires(limiter: RateLimiter, amounts: list[int]) -> list[asyncio.Task[Ticket]]:
    return [asyncio.create_task(limiter.acquire(tokens=amount)) for amount in amounts]


def issued(tasks: list[asyncio.Task[Ticket]]) -> int:
    return sum(1 for task in tasks if task.done() and not task.cancelled() and task.exception() is None)


# Construction.


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"tokens_per_minute": -5}, "tokens_per_minute"),
        ({"tokens_per_minute": 1.5}, "tokens_per_minute"),
        ({"max_pause": 0}, "max_pause"),
        ({"max_pause": math.inf}, "max_pause"),
        ({"request_window": -1}, "request_window"),
        ({"default_pause": math.nan}, "default_pause"),
        ({"default_pause": 5.0, "max_pause": 1.0}, "default_pause"),
        ({"min_token_window": 0}, "min_token_window"),
    ],
)
def test_invalid_settings_rejected(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        RateLimiter(**kwargs)  # type: ignore[arg-type]


async def test_negative_tokens_rejected() -> None:
    limiter = RateLimiter(600, 10_000, clock=FakeClock())
    with pytest.raises(ValueError, match="tokens"):
        await limiter.acquire(tokens=-1)


# Capacity.


async def test_capacity_error_at_once() -> None:
    limiter = RateLimiter(600, 10_000, clock=FakeClock())
    with pytest.raises(CapacityError) as raised:
        await limiter.acquire(tokens=10_001)
    assert "10001" in str(raised.value)
    assert "10000" in str(raised.value)
    assert raised.value.amount == 10_001
    assert raised.value.capacity == 10_000
    assert limiter.statistics().waiters == 0


async def test_amount_equal_to_limit_allowed() -> None:
    limiter = RateLimiter(600, 10_000, clock=FakeClock())
    ticket = await limiter.acquire(tokens=10_000)
    assert ticket.tokens == 10_000


async def test_shrunk_limit_fails_waiter() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, 10_000, clock=clock)
    first = await limiter.acquire(tokens=9_000)
    waiter = asyncio.create_task(limiter.acquire(tokens=8_000))
    await yield_to_loop()
    assert not waiter.done()

    info = RateLimitInfo(limit_tokens=5_000, remaining_tokens=0)
    limiter.settle(first, info, status=200)
    await yield_to_loop()
    assert waiter.done()
    error = waiter.exception()
    assert isinstance(error, CapacityError)
    assert error.amount == 8_000
    assert error.capacity == 5_000
    assert limiter.statistics().waiters == 0


# Pacing and FIFO.


async def test_refill_paces_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6_000, 6_000, clock=clock)  # 100 tokens per second
    await limiter.acquire(tokens=6_000)
    waiter = asyncio.create_task(limiter.acquire(tokens=500))
    await yield_to_loop()

    clock.advance(4.99)
    await yield_to_loop()
    assert not waiter.done()

    clock.advance(0.01)
    await yield_to_loop()
    assert waiter.done()
    assert waiter.result().issued_at == pytest.approx(5.0)


async def test_fifo_large_not_starved() -> None:
    clock = FakeClock(autojump=True)
    limiter = RateLimiter(60_000, 6_000, clock=clock)  # 100 tokens per second
    await limiter.acquire(tokens=6_000)
    order: list[str] = []

    async def acquire(name: str, amount: int) -> None:
        await limiter.acquire(tokens=amount)
        order.append(name)

    tasks = [asyncio.create_task(acquire("large", 5_000))]
    await yield_to_loop()
    tasks += [asyncio.create_task(acquire(f"small{index}", 10)) for index in range(5)]
    await asyncio.gather(*tasks)

    assert order == ["large", "small0", "small1", "small2", "small3", "small4"]
    assert clock.now() == pytest.approx(50.0 + 0.5, abs=0.01)


def max_in_any_window(times: list[float], length: float) -> int:
    ordered = sorted(times)
    counts = [
        sum(1 for moment in ordered[index:] if moment < start + length - 1e-9) for index, start in enumerate(ordered)
    ]
    return max(counts)


async def test_cold_start_request_burst_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3_000, 10_000_000, clock=clock, request_window=1.0)  # 50 requests per second
    tasks = start_acquires(limiter, [1] * 200)
    await yield_to_loop(100)
    assert issued(tasks) <= 2

    clock.advance(0.5)
    await yield_to_loop(100)
    assert issued(tasks) <= 27
    for task in tasks:
        task.cancel()


async def test_cold_start_window_bound_holds() -> None:
    clock = FakeClock(autojump=True)
    limiter = RateLimiter(3_000, 10_000_000, clock=clock, request_window=1.0)
    tickets = await asyncio.gather(*start_acquires(limiter, [1] * 200))
    times = [ticket.issued_at for ticket in tickets]
    assert max_in_any_window(times, 1.0) <= 50
    # 200 requests at 50 per 1.02 s (the default 2% margin): the last starts near 3 windows in.
    assert times[-1] == pytest.approx(3 * 1.02 + 49 * 0.02, abs=0.05)


async def test_window_without_margin_exact() -> None:
    clock = FakeClock(autojump=True)
    limiter = RateLimiter(3_000, 10_000_000, clock=clock, request_margin=0.0)
    tickets = await asyncio.gather(*start_acquires(limiter, [1] * 150))
    times = [ticket.issued_at for ticket in tickets]
    assert max_in_any_window(times, 1.0) == 50
    assert sum(1 for moment in times if moment < 1.0) == 50


async def test_request_window_holds_in_any_window() -> None:
    clock = FakeClock(autojump=True)
    limiter = RateLimiter(600, None, clock=clock, request_window=2.0)  # 10 per s, 20 per 2 s
    probe = await limiter.acquire()
    limiter.settle(probe, RateLimitInfo(), status=200)
    tickets = await asyncio.gather(*start_acquires(limiter, [0] * 99))
    times = [probe.issued_at] + [ticket.issued_at for ticket in tickets]
    assert max_in_any_window(times, 2.0) <= 20
    assert max_in_any_window(times, 0.2) <= 3
    assert 9.5 <= times[-1] <= 10.5


async def test_probe_counts_in_window() -> None:
    clock = FakeClock(autojump=True)
    limiter = RateLimiter(60, None, clock=clock)  # one request per second
    probe = await limiter.acquire()
    clock.advance(0.25)
    limiter.settle(probe, RateLimitInfo(), status=200)
    second = await limiter.acquire()
    assert second.issued_at == pytest.approx(1.02)


async def test_fractional_window_keeps_rate() -> None:
    clock = FakeClock(autojump=True)
    limiter = RateLimiter(90, None, clock=clock, request_margin=0.0)  # 1.5 per second: one per 2/3 s
    limiter.settle(await limiter.acquire(), RateLimitInfo(), status=200)
    tickets = await asyncio.gather(*start_acquires(limiter, [0] * 30))
    gaps = [later.issued_at - earlier.issued_at for earlier, later in itertools.pairwise(tickets)]
    assert min(gaps) == pytest.approx(2 / 3)
    assert limiter.statistics().burst_requests == 1


# Probing unknown limits.


async def test_probe_lets_one_request_through() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    probe = await limiter.acquire(tokens=100)
    assert probe.probe
    assert limiter.headroom() == 0.0
    tasks = start_acquires(limiter, [100] * 3)
    await yield_to_loop()
    assert issued(tasks) == 0
    assert limiter.statistics().probing

    info = RateLimitInfo(
        limit_requests=60_000, limit_tokens=60_000, remaining_requests=59_999, remaining_tokens=59_900
    )
    limiter.settle(probe, info, tokens_used=100, status=200)
    clock.advance(0.01)  # requests are spaced 1 ms apart at 60,000 per minute
    await yield_to_loop()
    assert issued(tasks) == 3
    stats = limiter.statistics()
    assert not stats.probing
    assert stats.limit_requests == 60_000
    assert stats.limit_tokens == 60_000
    assert stats.level_tokens == pytest.approx(59_900 - 300, abs=10)
    assert not any(task.result().probe for task in tasks)


async def test_probe_failure_passes_probe_on() -> None:
    limiter = RateLimiter(clock=FakeClock())
    probe = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await yield_to_loop()
    assert not waiter.done()

    limiter.settle(probe)  # the request failed without a response
    await yield_to_loop()
    assert waiter.done()
    assert waiter.result().probe


async def test_no_headers_stays_unlimited() -> None:
    limiter = RateLimiter(clock=FakeClock())
    probe = await limiter.acquire(tokens=1_000_000)
    limiter.settle(probe, RateLimitInfo(), status=200)
    tickets = await asyncio.gather(*start_acquires(limiter, [1_000_000] * 1000))
    assert len(tickets) == 1000
    stats = limiter.statistics()
    assert stats.limit_requests is None
    assert stats.limit_tokens is None
    assert limiter.headroom() == 1.0
    assert "requests=unlimited" in repr(limiter)


async def test_configured_limits_skip_probe() -> None:
    limiter = RateLimiter(60_000, 60_000, clock=FakeClock())
    first = await limiter.acquire(tokens=10)
    second = await limiter.acquire(tokens=10)
    assert not first.probe
    assert not second.probe


# Re-syncing from headers.


async def test_resync_subtracts_later_in_flight() -> None:
    limiter = RateLimiter(6_000, 100_000, clock=FakeClock())
    first = await limiter.acquire(tokens=1_000)
    second = await limiter.acquire(tokens=2_000)
    third = await limiter.acquire(tokens=3_000)

    limiter.settle(first, RateLimitInfo(remaining_requests=5_990, remaining_tokens=90_000), status=200)
    stats = limiter.statistics()
    assert stats.level_tokens == pytest.approx(90_000 - 2_000 - 3_000)
    assert stats.level_requests == pytest.approx(5_990 - 2)

    limiter.settle(second, RateLimitInfo(remaining_tokens=87_000), status=200)
    assert limiter.statistics().level_tokens == pytest.approx(87_000 - 3_000)

    limiter.settle(third, RateLimitInfo(remaining_tokens=84_500), status=200)
    assert limiter.statistics().level_tokens == pytest.approx(84_500)


async def test_resync_ignores_stale_response() -> None:
    limiter = RateLimiter(6_000, 100_000, clock=FakeClock())
    first = await limiter.acquire(tokens=1_000)
    second = await limiter.acquire(tokens=2_000)
    third = await limiter.acquire(tokens=3_000)

    limiter.settle(second, RateLimitInfo(remaining_tokens=80_000), status=200)
    assert limiter.statistics().level_tokens == pytest.approx(80_000 - 3_000)

    # The first request's headers are older than the second's: no level change, no double count.
    limiter.settle(first, RateLimitInfo(remaining_tokens=95_000), tokens_used=500, status=200)
    assert limiter.statistics().level_tokens == pytest.approx(77_000)

    limiter.settle(third, None, tokens_used=2_000, status=200)
    assert limiter.statistics().level_tokens == pytest.approx(78_000)


async def test_resync_raises_level_to_report() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, 60_000, clock=clock)
    ticket = await limiter.acquire(tokens=60_000)
    assert limiter.statistics().level_tokens == pytest.approx(0)
    limiter.settle(ticket, RateLimitInfo(remaining_tokens=50_000), status=200)
    assert limiter.statistics().level_tokens == pytest.approx(50_000)


async def test_configured_limit_is_ceiling() -> None:
    limiter = RateLimiter(600, 60_000, clock=FakeClock())
    ticket = await limiter.acquire(tokens=10)
    limiter.settle(ticket, RateLimitInfo(limit_requests=6_000, limit_tokens=1_000_000), status=200)
    stats = limiter.statistics()
    assert stats.limit_requests == 600
    assert stats.limit_tokens == 60_000


async def test_refill_rate_per_minute_default() -> None:
    limiter = RateLimiter(clock=FakeClock())
    probe = await limiter.acquire(tokens=1_000)
    info = RateLimitInfo(
        limit_requests=3_000,
        limit_tokens=1_000_000,
        remaining_requests=2_999,
        remaining_tokens=999_000,
        reset_requests=0.02,
        reset_tokens=0.06,
    )
    limiter.settle(probe, info, status=200)
    stats = limiter.statistics()
    assert stats.rate_requests == pytest.approx(50.0)
    assert stats.rate_tokens == pytest.approx(1_000_000 / 60)


async def test_refill_rate_derived_from_reset() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    probe = await limiter.acquire(tokens=1_000)
    # A full minute's worth refills in 10 s: the server refills over 10 s, not 60 s.
    limiter.settle(probe, RateLimitInfo(limit_tokens=1_000, remaining_tokens=0, reset_tokens=10.0), status=200)
    assert limiter.statistics().rate_tokens == pytest.approx(100.0)

    clock.advance(0.1)
    ticket = await limiter.acquire(tokens=10)
    # A nearly full bucket with a rounded reset is no evidence either way: the rate stays.
    limiter.settle(ticket, RateLimitInfo(limit_tokens=1_000, remaining_tokens=990, reset_tokens=1.0), status=200)
    assert limiter.statistics().rate_tokens == pytest.approx(100.0)


async def test_remaining_without_limit_guesses_limit() -> None:
    limiter = RateLimiter(clock=FakeClock())
    probe = await limiter.acquire(tokens=1_000)
    limiter.settle(probe, RateLimitInfo(remaining_requests=119, remaining_tokens=119_000), status=200)
    stats = limiter.statistics()
    assert stats.limit_tokens == 119_000
    assert stats.limit_requests == 119


# Usage correction.


async def test_usage_refunds_overestimate() -> None:
    limiter = RateLimiter(600, 10_000, clock=FakeClock())
    ticket = await limiter.acquire(tokens=1_000)
    assert limiter.statistics().level_tokens == pytest.approx(9_000)
    limiter.settle(ticket, None, tokens_used=400, status=200)
    stats = limiter.statistics()
    assert stats.level_tokens == pytest.approx(9_600)
    assert stats.tokens_charged == 1_000
    assert stats.tokens_corrected == -600


async def test_usage_charges_underestimate() -> None:
    limiter = RateLimiter(600, 10_000, clock=FakeClock())
    ticket = await limiter.acquire(tokens=100)
    limiter.settle(ticket, None, tokens_used=700, status=200)
    assert limiter.statistics().level_tokens == pytest.approx(10_000 - 700)


async def test_usage_correction_never_overfills() -> None:
    limiter = RateLimiter(600, 10_000, clock=FakeClock())
    ticket = await limiter.acquire(tokens=100)
    limiter.settle(ticket, None, tokens_used=0, status=200)
    assert limiter.statistics().level_tokens == pytest.approx(10_000)


# 429 handling.


async def test_429_pauses_every_waiter_until_hint() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600_000, 1_000_000, clock=clock)
    rejected = await limiter.acquire(tokens=10)
    limiter.settle(rejected, RateLimitInfo(retry_after=2.0), status=429, limit_type="requests")
    tasks = start_acquires(limiter, [10] * 5)

    await yield_to_loop()
    assert issued(tasks) == 0
    assert limiter.headroom() == 0.0
    stats = limiter.statistics()
    assert stats.pause_deadline == pytest.approx(2.0)
    assert stats.rate_limited == 1
    assert stats.rate_limited_requests == 1

    clock.advance(1.999)
    await yield_to_loop()
    assert issued(tasks) == 0

    clock.advance(0.001)
    await yield_to_loop()
    assert issued(tasks) == 5
    assert all(task.result().issued_at == pytest.approx(2.0) for task in tasks)


async def test_429_extends_pause_of_sleeping_head() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600_000, 1_000_000, clock=clock)
    first = await limiter.acquire()
    second = await limiter.acquire()
    limiter.settle(first, RateLimitInfo(retry_after=1.0), status=429)
    waiter = asyncio.create_task(limiter.acquire())
    await yield_to_loop()

    limiter.settle(second, RateLimitInfo(retry_after=3.0), status=429)
    clock.advance(1.0)
    await yield_to_loop()
    assert not waiter.done()

    clock.advance(2.0)
    await yield_to_loop()
    assert waiter.done()


async def test_429_pause_bounded_by_max_pause() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6_000, 1_000_000, clock=clock, max_pause=5.0)
    ticket = await limiter.acquire()
    limiter.settle(ticket, RateLimitInfo(retry_after=3_600.0), status=429)
    assert limiter.statistics().pause_delay == pytest.approx(5.0)


async def test_429_without_hint_uses_default_and_refill() -> None:
    clock = FakeClock(autojump=True)
    limiter = RateLimiter(6_000, 6_000, clock=clock, default_pause=1.0)  # 100 tokens per second
    ticket = await limiter.acquire(tokens=100)
    limiter.settle(ticket, None, status=429, limit_type="tokens")
    assert limiter.statistics().level_tokens == pytest.approx(0.0)

    retry = await limiter.acquire(tokens=300)
    # The pause ends at 1 s, but the emptied token bucket needs 3 s to hold 300 tokens.
    assert retry.issued_at == pytest.approx(3.0)


async def test_429_infers_tokens_from_info() -> None:
    limiter = RateLimiter(6_000, 100_000, clock=FakeClock())
    ticket = await limiter.acquire(tokens=5_000)
    limiter.settle(ticket, RateLimitInfo(remaining_tokens=1_000, retry_after=0.5), status=429)
    stats = limiter.statistics()
    assert stats.rate_limited_tokens == 1
    assert stats.level_tokens == pytest.approx(1_000)


async def test_burst_429_tokens_halves_window_once() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600_000, 60_000, clock=clock)  # 1,000 tokens per second
    tickets = [await limiter.acquire(tokens=2_000) for _ in range(30)]
    assert limiter.statistics().level_tokens == pytest.approx(0)

    for ticket in tickets[20:]:
        limiter.settle(ticket, RateLimitInfo(retry_after=1.0), status=429, limit_type="tokens")
    stats = limiter.statistics()
    assert stats.burst_tokens == pytest.approx(30_000)
    assert stats.token_window_halvings == 1
    assert stats.rate_limited_tokens == 10

    # The allowance caps the level: after a full minute only half a minute of tokens is there.
    clock.advance(60.0)
    assert limiter.statistics().level_tokens == pytest.approx(30_000)
    assert limiter.statistics().rate_tokens == pytest.approx(1_000)


async def test_learned_window_keeps_to_floor() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6_000, 60_000, clock=clock, min_token_window=1.0)
    for _ in range(10):
        clock.advance(100.0)
        ticket = await limiter.acquire(tokens=1_500)
        limiter.settle(ticket, RateLimitInfo(retry_after=0.1), status=429, limit_type="tokens")
    stats = limiter.statistics()
    # Halving stops at the larger of 1 s of tokens (1,000) and the largest request (1,500).
    assert stats.burst_tokens == pytest.approx(1_500)
    assert stats.token_window_halvings == 6


async def test_learned_window_paces_burst() -> None:
    clock = FakeClock(autojump=True)
    limiter = RateLimiter(6_000_000, 60_000, clock=clock)  # 1,000 tokens per second
    first = await limiter.acquire(tokens=1_000)
    limiter.settle(first, RateLimitInfo(retry_after=0.5), status=429, limit_type="tokens")
    clock.advance(120.0)

    start = clock.now()
    tickets = await asyncio.gather(*start_acquires(limiter, [1_000] * 60))
    at_start = [ticket for ticket in tickets if ticket.issued_at == start]
    assert len(at_start) == 30
    assert tickets[30].issued_at == pytest.approx(start + 1.0)
    assert tickets[-1].issued_at == pytest.approx(start + 30.0)


async def test_429_requests_widens_margin_once() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600_000, 1_000_000, clock=clock)
    tickets = [await limiter.acquire() for _ in range(3)]
    info = RateLimitInfo(remaining_requests=500, retry_after=0.01)
    # The first 429 alone changes nothing, the second recurs and widens, the third is one episode.
    for ticket in tickets:
        limiter.settle(ticket, info, status=429, limit_type="requests")
    assert limiter.statistics().request_margin == pytest.approx(0.03)

    clock.advance(1.0)
    later = await limiter.acquire()
    limiter.settle(later, info, status=429, limit_type="requests")
    assert limiter.statistics().request_margin == pytest.approx(0.04)


async def test_isolated_429_requests_keeps_margin() -> None:
    clock = FakeClock(autojump=True)
    limiter = RateLimiter(6_000_000, 1_000_000_000, clock=clock)
    info = RateLimitInfo(remaining_requests=500, retry_after=0.01)
    limiter.settle(await limiter.acquire(), info, status=429, limit_type="requests")
    for _ in range(150):
        limiter.settle(await limiter.acquire(), None, status=200)
    limiter.settle(await limiter.acquire(), info, status=429, limit_type="requests")
    stats = limiter.statistics()
    assert stats.request_margin == pytest.approx(0.02)
    assert stats.rate_limited_requests == 2


async def test_429_requests_empty_bucket_keeps_margin() -> None:
    limiter = RateLimiter(600_000, 1_000_000, clock=FakeClock())
    ticket = await limiter.acquire()
    limiter.settle(ticket, RateLimitInfo(remaining_requests=0, retry_after=0.01), status=429, limit_type="requests")
    assert limiter.statistics().request_margin == pytest.approx(0.02)


async def test_widened_margin_narrows_later() -> None:
    clock = FakeClock(autojump=True)
    limiter = RateLimiter(6_000_000, 1_000_000_000, clock=clock)
    info = RateLimitInfo(remaining_requests=500, retry_after=0.01)
    for _ in range(2):
        limiter.settle(await limiter.acquire(), info, status=429, limit_type="requests")
    assert limiter.statistics().request_margin == pytest.approx(0.03)
    for _ in range(499):
        limiter.settle(await limiter.acquire(), None, status=200)
    assert limiter.statistics().request_margin == pytest.approx(0.03)
    limiter.settle(await limiter.acquire(), None, status=200)
    assert limiter.statistics().request_margin == pytest.approx(0.02)


# Cancellation.


async def test_cancel_head_promotes_next() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60_000, 6_000, clock=clock)  # 100 tokens per second
    await limiter.acquire(tokens=6_000)
    head = asyncio.create_task(limiter.acquire(tokens=5_000))
    await yield_to_loop()
    follower = asyncio.create_task(limiter.acquire(tokens=100))
    await yield_to_loop()

    head.cancel()
    await yield_to_loop()
    assert head.cancelled()
    assert limiter.statistics().waiters == 1

    clock.advance(1.0)
    await yield_to_loop()
    assert follower.done()
    assert follower.result().issued_at == pytest.approx(1.0)
    assert clock.sleepers == 0


async def test_cancel_middle_keeps_order() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60_000, 6_000, clock=clock)
    await limiter.acquire(tokens=6_000)
    order: list[int] = []

    async def acquire(index: int) -> None:
        await limiter.acquire(tokens=100)
        order.append(index)

    tasks = [asyncio.create_task(acquire(index)) for index in range(4)]
    await yield_to_loop()
    tasks[1].cancel()
    tasks[2].cancel()
    await yield_to_loop()
    assert limiter.statistics().waiters == 2
    assert limiter.statistics().waiting_tokens == 200

    clock.advance(2.0)
    await asyncio.gather(tasks[0], tasks[3])
    assert order == [0, 3]
    assert limiter.statistics().waiters == 0


async def test_cancel_during_probe_wait() -> None:
    limiter = RateLimiter(clock=FakeClock())
    probe = await limiter.acquire()
    waiters = start_acquires(limiter, [0, 0])
    await yield_to_loop()
    waiters[0].cancel()
    await yield_to_loop()
    limiter.settle(probe, RateLimitInfo(), status=200)
    await yield_to_loop()
    assert waiters[0].cancelled()
    assert waiters[1].done()
    assert limiter.statistics().waiters == 0


async def test_cancelled_acquire_takes_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, 6_000, clock=clock)
    await limiter.acquire(tokens=6_000)
    waiter = asyncio.create_task(limiter.acquire(tokens=1_000))
    await yield_to_loop()
    waiter.cancel()
    await yield_to_loop()
    clock.advance(10.0)
    stats = limiter.statistics()
    assert stats.level_tokens == pytest.approx(1_000)
    assert stats.issued == 1


# Settling and reporting.


async def test_second_settle_ignored(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RateLimiter(600, 10_000, clock=FakeClock())
    ticket = await limiter.acquire(tokens=1_000)
    limiter.settle(ticket, None, tokens_used=500, status=200)
    with caplog.at_level(logging.WARNING, logger="embedlimit._limiter"):
        limiter.settle(ticket, None, tokens_used=0, status=200)
    assert "second settle" in caplog.text
    assert limiter.statistics().level_tokens == pytest.approx(9_500)
    assert limiter.statistics().settled == 1


async def test_statistics_content() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3_000, 60_000, clock=clock)
    first = await limiter.acquire(tokens=50_000)
    waiter = asyncio.create_task(limiter.acquire(tokens=20_000))
    await yield_to_loop()

    stats = limiter.statistics()
    assert stats.limit_requests == 3_000
    assert stats.limit_tokens == 60_000
    assert stats.level_requests == pytest.approx(2_999)
    assert stats.level_tokens == pytest.approx(10_000)
    assert stats.rate_requests == pytest.approx(50)
    assert stats.rate_tokens == pytest.approx(1_000)
    assert stats.burst_requests == 50
    assert stats.burst_tokens == pytest.approx(60_000)
    assert stats.waiters == 1
    assert stats.waiting_tokens == 20_000
    assert stats.in_flight == 1
    assert stats.in_flight_tokens == 50_000
    assert stats.issued == 1
    assert stats.settled == 0
    assert not stats.probing
    assert stats.pause_deadline is None
    assert stats.rate_limited == 0

    limiter.settle(first, RateLimitInfo(retry_after=1.5), status=429, limit_type="tokens")
    text = repr(limiter)
    assert text.startswith("<RateLimiter ")
    assert "requests=2999/3000" in text
    assert "tokens=" in text
    assert "waiters=1" in text
    assert "in_flight=0" in text
    assert "429s=1" in text
    assert "paused 1.500s" in text
    waiter.cancel()


async def test_headroom_reflects_levels() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, 10_000, clock=clock)
    assert limiter.headroom() == pytest.approx(1.0)
    await limiter.acquire(tokens=7_500)
    assert limiter.headroom() == pytest.approx(0.25)
    waiter = asyncio.create_task(limiter.acquire(tokens=5_000))
    await yield_to_loop()
    assert limiter.headroom() == 0.0
    waiter.cancel()
