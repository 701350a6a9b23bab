"""Tests for RetryPolicy decisions and the call_with_retries loop on a FakeClock."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest

from embedlimit._clock import FakeClock
from embedlimit._errors import (
    AuthenticationError,
    CapacityError,
    ConfigurationError,
    EmbedLimitError,
    FatalError,
    InvalidInputError,
    InvalidResponseError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    error_from_response,
)
from embedlimit._retry import RetryPolicy, call_with_retries

pytestmark = pytest.mark.timeout(10)


def seeded_policy(**kwargs: float) -> RetryPolicy:
    return RetryPolicy(rng=random.Random(1234), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        ServerError("boom", status=500),
        TransportError("reset"),
        RequestTimeoutError("slow"),
        InvalidResponseError("bad json"),
        RateLimitError("slow down", status=429),
        asyncio.TimeoutError(),
        ConnectionResetError(),
        aiohttp.ServerDisconnectedError(),
    ],
)
def test_retryable_errors_get_delay(error: BaseException) -> None:
    delay = seeded_policy().delay_for(1, error)
    assert delay is not None
    assert 0.0 <= delay <= 0.5


@pytest.mark.parametrize(
    "error",
    [
        QuotaExceededError("no credit", status=429, code="insufficient_quota"),
        AuthenticationError("bad key", status=401),
        FatalError("not found", status=404),
        InvalidInputError("empty", status=400, input_index=3),
        CapacityError("too large", amount=10, capacity=5),
        ConfigurationError("bad setting"),
        EmbedLimitError("unknown"),
        KeyError("bug"),
        ValueError("bug"),
    ],
)
def test_non_retryable_errors_give_up(error: BaseException) -> None:
    assert seeded_policy().delay_for(1, error) is None


def test_quota_response_never_retried() -> None:
    body = b'{"error":{"message":"You exceeded your current quota.","code":"insufficient_quota"}}'
    error = error_from_response(429, {"retry-after": "1"}, body)
    assert RetryPolicy().delay_for(1, error) is None


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, True),
        (409, True),
        (413, False),
        (422, False),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
    ],
)
def test_status_decision_table(status: int, retried: bool) -> None:
    error = error_from_response(status, {}, b"")
    assert (seeded_policy().delay_for(1, error) is not None) is retried


def test_should_retry_false_wins() -> None:
    error = error_from_response(503, {"x-should-retry": "false"}, b"")
    assert seeded_policy().delay_for(1, error) is None


def test_should_retry_true_on_other_status() -> None:
    error = error_from_response(418, {"x-should-retry": "true"}, b"")
    assert seeded_policy().delay_for(1, error) is not None


def test_full_jitter_within_exponential_cap() -> None:
    policy = seeded_policy(base_delay=0.5, max_delay=60.0, max_attempts=20)
    error = ServerError("boom", status=500)
    for attempt, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 60.0), (15, 60.0)]:
        assert policy.backoff_cap(attempt) == cap
        delays = [policy.delay_for(attempt, error) for _ in range(200)]
        assert all(delay is not None and 0.0 <= delay <= cap for delay in delays)
        assert max(delay for delay in delays if delay is not None) > cap * 0.8


def test_seeded_jitter_reproducible() -> None:
    error = TransportError("reset")
    first = [RetryPolicy(rng=random.Random(7)).delay_for(attempt, error) for attempt in range(1, 6)]
    second = [RetryPolicy(rng=random.Random(7)).delay_for(attempt, error) for attempt in range(1, 6)]
    assert first == second


@pytest.mark.parametrize(("hint", "expected"), [(2.5, 2.5), (0.0, 0.0), (3_600.0, 60.0), (-4.0, 0.0)])
def test_server_hint_clamped(hint: float, expected: float) -> None:
    error = RateLimitError("slow down", status=429, retry_after=hint)
    assert seeded_policy().delay_for(1, error) == expected


def test_nan_hint_falls_back_to_backoff() -> None:
    delay = seeded_policy().delay_for(1, ServerError("boom", retry_after=float("nan")))
    assert delay is not None
    assert 0.0 <= delay <= 0.5


def test_gives_up_after_max_attempts() -> None:
    policy = seeded_policy(max_attempts=3)
    error = ServerError("boom", status=500)
    assert policy.delay_for(1, error) is not None
    assert policy.delay_for(2, error) is not None
    assert policy.delay_for(3, error) is None


def test_gives_up_past_max_elapsed() -> None:
    policy = seeded_policy(max_elapsed=10.0)
    error = RateLimitError("slow down", retry_after=4.0)
    assert policy.delay_for(1, error, elapsed=6.0) == 4.0
    assert policy.delay_for(1, error, elapsed=6.5) is None


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_elapsed": -1.0}, "max_elapsed"),
        ({"base_delay": float("inf")}, "base_delay"),
        ({"max_delay": float("nan")}, "max_delay"),
        ({"base_delay": 5.0, "max_delay": 1.0}, "base_delay"),
    ],
)
def test_invalid_policy_rejected(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_repr() -> None:
    assert repr(RetryPolicy()) == "RetryPolicy(max_attempts=8, max_elapsed=600, base_delay=0.5, max_delay=60)"


async def test_loop_retries_until_success() -> None:
    clock = FakeClock(autojump=True)
    attempts: list[int] = []
    retries: list[tuple[int, str, float]] = []

    async def call(attempt: int) -> str:
        attempts.append(attempt)
        if attempt < 3:
            raise RateLimitError("slow down", status=429, retry_after=2.0)
        return "done"

    def on_retry(attempt: int, error: BaseException, delay: float) -> None:
        retries.append((attempt, type(error).__name__, delay))

    result = await call_with_retries(call, seeded_policy(), clock, on_retry)
    assert result == "done"
    assert attempts == [1, 2, 3]
    assert retries == [(1, "RateLimitError", 2.0), (2, "RateLimitError", 2.0)]
    assert clock.now() == pytest.approx(4.0)


async def test_loop_raises_fatal_at_once() -> None:
    clock = FakeClock(autojump=True)
    attempts: list[int] = []

    async def call(attempt: int) -> None:
        attempts.append(attempt)
        raise QuotaExceededError("no credit", status=429, code="insufficient_quota")

    with pytest.raises(QuotaExceededError):
        await call_with_retries(call, seeded_policy(), clock)
    assert attempts == [1]
    assert clock.now() == 0.0


async def test_loop_raises_last_error_after_max_attempts() -> None:
    clock = FakeClock(autojump=True)
    attempts: list[int] = []

    async def call(attempt: int) -> None:
        attempts.append(attempt)
        raise ServerError(f"boom {attempt}", status=503)

    with pytest.raises(ServerError, match="boom 4"):
        await call_with_retries(call, seeded_policy(max_attempts=4), clock)
    assert attempts == [1, 2, 3, 4]


async def test_loop_stops_at_max_elapsed() -> None:
    clock = FakeClock(autojump=True)

    async def call(attempt: int) -> None:
        raise ServerError("boom", status=500, retry_after=30.0)

    with pytest.raises(ServerError):
        await call_with_retries(call, seeded_policy(max_elapsed=100.0, max_attempts=50), clock)
    assert clock.now() == pytest.approx(90.0)


async def test_loop_does_not_retry_cancellation() -> None:
    clock = FakeClock()
    attempts: list[int] = []

    async def call(attempt: int) -> None:
        attempts.append(attempt)
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await call_with_retries(call, seeded_policy(), clock)
    assert attempts == [1]
