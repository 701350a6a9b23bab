"""Metrics counters, percentiles, rates, the estimated cost and the request callback."""

from __future__ import annotations

import logging

import pytest

from embedlimit._clock import FakeClock
from embedlimit._errors import QuotaExceededError, RateLimitError, ServerError
from embedlimit._metrics import Metrics, RequestRecord


def record(
    latency: float = 0.1, *, tokens: int = 100, status: int | None = 200, error: str | None = None
) -> RequestRecord:
    return RequestRecord(
        key="#0 sk-...abcd", attempt=1, inputs=10, tokens=tokens, status=status, latency=latency, error=error
    )


def test_snapshot_counts_requests_and_rates() -> None:
    clock = FakeClock()
    metrics = Metrics(clock, price_per_million_tokens=0.02)
    metrics.start_request()
    for _ in range(4):
        metrics.record_request(record(tokens=250_000))
    clock.advance(30.0)

    snapshot = metrics.snapshot()

    assert snapshot.requests == 4
    assert snapshot.succeeded_requests == 4
    assert snapshot.inputs == 40
    assert snapshot.tokens == 1_000_000
    assert snapshot.elapsed == 30.0
    assert snapshot.requests_per_minute == pytest.approx(8.0)
    assert snapshot.tokens_per_minute == pytest.approx(2_000_000)
    assert snapshot.estimated_cost_usd == pytest.approx(0.02)


def test_snapshot_counts_errors_and_429_kinds() -> None:
    metrics = Metrics(FakeClock(), price_per_million_tokens=None)

    metrics.record_request(record(status=429, error="RateLimitError"), RateLimitError("slow", limit_type="tokens"))
    metrics.record_request(record(status=429, error="RateLimitError"), RateLimitError("slow"))
    metrics.record_request(record(status=429, error="QuotaExceededError"), QuotaExceededError("quota"))
    metrics.record_request(record(status=503, error="ServerError"), ServerError("busy"))
    metrics.record_retry()
    metrics.record_skipped(3)
    snapshot = metrics.snapshot()

    assert snapshot.failed_requests == 4
    assert snapshot.inputs == 0
    assert dict(snapshot.rate_limited) == {"tokens": 1, "unknown": 1, "quota": 1}
    assert dict(snapshot.errors) == {"RateLimitError": 2, "QuotaExceededError": 1, "ServerError": 1}
    assert snapshot.retries == 1
    assert snapshot.skipped_inputs == 3
    assert snapshot.estimated_cost_usd is None


def test_latency_percentiles_nearest_rank() -> None:
    metrics = Metrics(FakeClock(), price_per_million_tokens=None)
    for milliseconds in range(1, 101):
        metrics.record_request(record(latency=milliseconds / 1000))

    snapshot = metrics.snapshot()

    assert snapshot.latency_p50 == 0.050
    assert snapshot.latency_p90 == 0.090
    assert snapshot.latency_p99 == 0.099
    assert snapshot.latency_max == 0.100


def test_empty_snapshot_has_no_latency() -> None:
    snapshot = Metrics(FakeClock(), price_per_million_tokens=0.02).snapshot(concurrency_limit=4)

    assert snapshot.latency_p50 is None
    assert snapshot.requests_per_minute == 0.0
    assert snapshot.estimated_cost_usd == 0.0
    assert snapshot.concurrency_limit == 4


def test_callback_receives_each_record() -> None:
    received: list[RequestRecord] = []
    metrics = Metrics(FakeClock(), price_per_million_tokens=None, on_request=received.append)

    metrics.record_request(record(latency=0.5))

    assert received == [record(latency=0.5)]


def test_failing_callback_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: RequestRecord) -> None:
        raise RuntimeError("exporter down")

    metrics = Metrics(FakeClock(), price_per_million_tokens=None, on_request=broken)
    with caplog.at_level(logging.ERROR, logger="embedlimit._metrics"):
        for _ in range(12):
            metrics.record_request(record())

    assert metrics.snapshot().requests == 12
    assert [entry.message for entry in caplog.records] == [
        "on_request callback failed (1 failures so far)",
        "on_request callback failed (10 failures so far)",
    ]
