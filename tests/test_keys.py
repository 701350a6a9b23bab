"""Key fingerprints, the choice of key by headroom, and key retirement."""

from __future__ import annotations

import logging

import pytest

from embedlimit._clock import FakeClock
from embedlimit._errors import AuthenticationError, FatalError, QuotaExceededError
from embedlimit._keys import KeyPool, fingerprint
from embedlimit._limiter import RateLimiter

pytestmark = pytest.mark.timeout(10)

KEYS = ["sk-proj-first-key-0000000000aaaa", "sk-proj-second-key-000000000bbbb", "sk-proj-third-key-0000000000cccc"]


def make_pool(keys: list[str] = KEYS) -> KeyPool:
    clock = FakeClock()
    return KeyPool(keys, lambda: RateLimiter(60_000, 1_000_000, clock=clock))


def test_fingerprint_shows_index_and_tail() -> None:
    assert fingerprint("sk-proj-abcdefghijklmnop1234", 2) == "#2 sk-...1234"
    assert fingerprint("0123456789abcdef0123456789abcdef", 0) == "#0 ...cdef"
    assert fingerprint("sk-short", 1) == "#1 sk-..."


def test_repr_hides_secret() -> None:
    pool = make_pool()

    assert KEYS[0] not in repr(pool.keys[0])
    assert repr(pool.keys[0]) == "ApiKey(#0 sk-...aaaa)"


async def test_choose_spreads_over_equal_keys() -> None:
    pool = make_pool()
    chosen = []

    for _ in range(3):
        key = pool.choose()
        key.pending += 1
        chosen.append(key.index)

    assert sorted(chosen) == [0, 1, 2]


async def test_choose_prefers_most_headroom() -> None:
    pool = make_pool()
    for _ in range(5):
        await pool.keys[0].limiter.acquire(100_000)

    assert pool.keys[0].limiter.headroom() == pytest.approx(0.5)
    assert pool.choose().index != 0


def test_retire_logs_fingerprint_not_key(caplog: pytest.LogCaptureFixture) -> None:
    pool = make_pool()

    with caplog.at_level(logging.WARNING, logger="embedlimit._keys"):
        pool.retire(pool.keys[1], QuotaExceededError("quota exceeded", status=429, code="insufficient_quota"))

    assert [key.index for key in pool.active] == [0, 2]
    assert "#1 sk-...bbbb" in caplog.text
    assert "2 of 3 keys remain" in caplog.text
    assert all(key not in caplog.text for key in KEYS)


def test_retire_twice_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    pool = make_pool()
    error = AuthenticationError("bad key", status=401)

    with caplog.at_level(logging.WARNING, logger="embedlimit._keys"):
        pool.retire(pool.keys[0], error)
        pool.retire(pool.keys[0], error)

    assert len(caplog.records) == 1


async def test_choose_never_returns_retired_key() -> None:
    pool = make_pool()
    pool.retire(pool.keys[0], AuthenticationError("bad key", status=401))

    assert {pool.choose().index for _ in range(5)} <= {1, 2}


def test_all_retired_raises_last_error_type() -> None:
    pool = make_pool(KEYS[:2])
    pool.retire(pool.keys[0], AuthenticationError("bad key", status=401))
    pool.retire(pool.keys[1], QuotaExceededError("quota", status=429, code="insufficient_quota"))

    with pytest.raises(QuotaExceededError) as caught:
        pool.choose()

    message = str(caught.value)
    assert "all 2 API keys are retired" in message
    assert "#0 sk-...aaaa: authentication failed (HTTP 401)" in message
    assert "#1 sk-...bbbb: quota exceeded (insufficient_quota)" in message
    assert isinstance(caught.value, FatalError)
    assert all(key not in message for key in KEYS)
