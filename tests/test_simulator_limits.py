"""Rate-limit buckets, the short request window and the quota book, driven by explicit times."""

from __future__ import annotations

import math

import pytest

from embedlimit.testing._limits import Bucket, QuotaBook, RateLimits, RequestWindow


def test_bucket_refills_continuously() -> None:
    bucket = Bucket(60, now=0.0)
    bucket.take(60)
    bucket.refill(0.5)
    assert bucket.level == pytest.approx(0.5)
    assert bucket.remaining() == 0
    assert bucket.delay_until_fits(1) == pytest.approx(0.5)
    assert bucket.reset_delay() == pytest.approx(59.5)
    bucket.refill(1000.0)
    assert bucket.level == 60.0


def test_bucket_rejects_zero_limit() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Bucket(0, now=0.0)


def test_window_size_follows_rpm() -> None:
    assert RequestWindow.for_rpm(60_000, 1.0).max_requests == 1000
    assert RequestWindow.for_rpm(60, 1.0).max_requests == 1
    assert RequestWindow.for_rpm(90, 1.0).max_requests == 2
    assert RequestWindow.for_rpm(10, 1.0).max_requests == 1
    assert RequestWindow.for_rpm(3000, 0.1).max_requests == 5


def test_window_slides() -> None:
    window = RequestWindow(2, 1.0)
    window.record(0.0)
    window.record(0.25)
    assert window.delay(0.5) == pytest.approx(0.5)
    assert window.delay(1.0) == pytest.approx(0.0)
    window.record(1.0)
    assert window.delay(1.1) == pytest.approx(0.15)


def test_admit_charges_request_and_tokens() -> None:
    limits = RateLimits(60, 6000, now=0.0)
    decision = limits.admit(100, now=0.0)
    assert decision.accepted
    assert decision.snapshot.remaining_requests == 59
    assert decision.snapshot.remaining_tokens == 5900
    assert decision.snapshot.reset_requests == pytest.approx(1.0)
    assert decision.snapshot.reset_tokens == pytest.approx(1.0)


def test_token_rejection_gives_exact_delay() -> None:
    limits = RateLimits(None, 1_000_000, now=0.0)
    assert limits.admit(999_000, now=0.0).accepted
    decision = limits.admit(5000, now=0.0)
    assert not decision.accepted
    assert decision.limit_type == "tokens"
    assert (decision.used, decision.limit, decision.requested) == (999_000, 1_000_000, 5000)
    assert decision.delay == pytest.approx(0.24)
    assert limits.admit(5000, now=0.2399).accepted is False
    assert limits.admit(5000, now=0.24).accepted


def test_rejected_request_counts_against_rpm() -> None:
    limits = RateLimits(2, None, now=0.0)
    assert limits.admit(1, now=0.0).accepted
    assert limits.admit(1, now=0.0).accepted
    first = limits.admit(1, now=0.0)
    assert first.delay == pytest.approx(30.0)
    second = limits.admit(1, now=29.0)
    assert not second.accepted
    assert second.delay == pytest.approx(30.0)
    assert limits.admit(1, now=59.0).accepted


def test_rejections_free_without_count_rejected() -> None:
    limits = RateLimits(2, None, now=0.0, count_rejected=False)
    limits.admit(1, now=0.0)
    limits.admit(1, now=0.0)
    assert not limits.admit(1, now=0.0).accepted
    assert not limits.admit(1, now=29.0).accepted
    assert limits.admit(1, now=30.0).accepted


def test_short_window_rejects_burst() -> None:
    limits = RateLimits(120, None, now=0.0, request_window=1.0)
    assert limits.admit(1, now=0.0).accepted
    assert limits.admit(1, now=0.0).accepted
    decision = limits.admit(1, now=0.0)
    assert not decision.accepted
    assert decision.limit_type == "requests"
    assert decision.delay == pytest.approx(1.0)
    assert decision.used == 2
    assert limits.admit(1, now=1.0).accepted


def test_request_over_tpm_never_fits() -> None:
    limits = RateLimits(60, 1000, now=0.0)
    decision = limits.admit(1001, now=0.0)
    assert not decision.accepted
    assert decision.too_large
    assert decision.limit_type == "tokens"
    assert math.isinf(decision.delay)


def test_quota_budget_and_switch() -> None:
    quota = QuotaBook(budget=10)
    assert not quota.is_exhausted("a")
    quota.record("a", 10)
    assert quota.is_exhausted("a")
    assert not quota.is_exhausted("b")
    quota.set_exhausted("b", True)
    assert quota.is_exhausted("b")
    quota.set_exhausted("b", False)
    assert not quota.is_exhausted("b")
