"""Tests for rate-limit header parsing: every accepted format, bounds and round trips."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from embedlimit._headers import (
    MAX_DURATION,
    RateLimitInfo,
    format_duration,
    parse_duration,
    parse_rate_limit_headers,
)

# 2024-12-04T20:00:00Z in Unix seconds, the wall-clock time the absolute formats are read against.
NOW = datetime(2024, 12, 4, 20, 0, 0, tzinfo=timezone.utc).timestamp()

OPENAI_HEADERS = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-remaining-tokens": "149984",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-reset-tokens": "6m0s",
}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("1m30.5s", 90.5),
        ("20ms", 0.020),
        ("12ms", 0.012),
        ("2h0m0.5s", 7200.5),
        ("1h", 3600.0),
        ("1m", 60.0),
        ("1m20ms", 60.020),
        ("0.5s", 0.5),
        (".5s", 0.5),
        ("0s", 0.0),
        ("8", 8.0),
        ("0.25", 0.25),
        (" 17 ", 17.0),
        ("2024-12-04T20:00:30Z", 30.0),
        ("2024-12-04T20:00:30.250Z", 30.25),
        ("2024-12-04T21:00:30+01:00", 30.0),
        ("2024-12-04T19:00:30-01:00", 30.0),
        ("Wed, 04 Dec 2024 20:00:45 GMT", 45.0),
        ("2024-12-04T19:59:00Z", 0.0),
        ("Wed, 04 Dec 2024 19:00:00 GMT", 0.0),
    ],
)
def test_parse_duration_formats(text: str, seconds: float) -> None:
    parsed = parse_duration(text, now=NOW)
    assert parsed is not None
    assert parsed == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "soon",
        "-1",
        "-1s",
        "nan",
        "NaN",
        "inf",
        "infinity",
        "1e400",
        "1x",
        "s",
        "ms",
        "1.2.3s",
        "5 s",
        "86401",
        "25h",
        "2025-12-04T20:00:00Z",
        "2024-13-04T20:00:00Z",
        "Wed, 04 Dec 2030 20:00:00 GMT",
        "Mon, 99 Foo 2024 99:99:99 GMT",
    ],
)
def test_parse_duration_rejects_invalid(text: str) -> None:
    assert parse_duration(text, now=NOW) is None


def test_parse_duration_m_is_not_ms() -> None:
    assert parse_duration("20m") == 1200.0
    assert parse_duration("20ms") == pytest.approx(0.020)
    assert parse_duration("1m1ms") == pytest.approx(60.001)


def test_headers_openai_sample() -> None:
    info = parse_rate_limit_headers(OPENAI_HEADERS)
    assert info == RateLimitInfo(
        limit_requests=60,
        limit_tokens=150_000,
        remaining_requests=59,
        remaining_tokens=149_984,
        reset_requests=1.0,
        reset_tokens=360.0,
        retry_after=None,
    )
    assert info.has_limits


def test_headers_keys_case_insensitive_dict() -> None:
    headers = {key.upper(): value for key, value in OPENAI_HEADERS.items()}
    info = parse_rate_limit_headers(headers)
    assert info.limit_tokens == 150_000
    assert info.reset_tokens == 360.0


def test_headers_cimultidict_proxy() -> None:
    multidict = CIMultiDict({"X-RateLimit-Limit-Requests": "3000", "Retry-After": "2"})
    info = parse_rate_limit_headers(CIMultiDictProxy(multidict))
    assert info.limit_requests == 3000
    assert info.retry_after == 2.0


def test_headers_azure_integer_seconds() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "119",
        "x-ratelimit-remaining-tokens": "119000",
        "x-ratelimit-reset-tokens": "8",
        "retry-after-ms": "8000",
    }
    info = parse_rate_limit_headers(headers)
    assert info.remaining_requests == 119
    assert info.reset_tokens == 8.0
    assert info.retry_after == 8.0


def test_headers_empty_has_no_limits() -> None:
    info = parse_rate_limit_headers({})
    assert info == RateLimitInfo()
    assert not info.has_limits


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "nan", "inf", "1e400", ""])
def test_headers_invalid_counts_ignored(value: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="embedlimit._headers")
    info = parse_rate_limit_headers({"x-ratelimit-remaining-tokens": value, "x-ratelimit-limit-tokens": "10"})
    assert info.remaining_tokens is None
    assert info.limit_tokens == 10
    assert "x-ratelimit-remaining-tokens" in caplog.text


def test_headers_count_with_zero_fraction_accepted() -> None:
    info = parse_rate_limit_headers({"x-ratelimit-limit-tokens": "150000.0"})
    assert info.limit_tokens == 150_000


@pytest.mark.parametrize("value", ["-3s", "garbage", "NaN", "Infinity", "1e9", "48h"])
def test_headers_invalid_resets_ignored(value: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="embedlimit._headers")
    info = parse_rate_limit_headers({"x-ratelimit-reset-tokens": value})
    assert info.reset_tokens is None
    assert "x-ratelimit-reset-tokens" in caplog.text


def test_retry_after_ms_wins() -> None:
    headers = {"retry-after-ms": "1500", "retry-after": "7"}
    assert parse_rate_limit_headers(headers).retry_after == 1.5


def test_retry_after_seconds_when_ms_invalid() -> None:
    headers = {"retry-after-ms": "soon", "retry-after": "7"}
    assert parse_rate_limit_headers(headers).retry_after == 7.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), ("0.5", 0.5), ("Wed, 04 Dec 2024 20:00:09 GMT", 9.0), ("2024-12-04T20:00:03Z", 3.0)],
)
def test_retry_after_header_forms(value: str, seconds: float) -> None:
    info = parse_rate_limit_headers({"Retry-After": value}, now=NOW)
    assert info.retry_after == pytest.approx(seconds)


def test_retry_after_huge_ignored() -> None:
    headers = {"retry-after-ms": str(10**12), "retry-after": "999999"}
    assert parse_rate_limit_headers(headers).retry_after is None


@pytest.mark.parametrize(
    ("body", "seconds"),
    [
        (
            b'{"error":{"message":"Rate limit reached for text-embedding-3-small in organization org-x on '
            b'tokens per min (TPM): Limit 1000000, Used 999000, Requested 5000. Please try again in 4.585s.'
            b' Visit https://platform.openai.com/account/rate-limits to learn more.",'
            b'"type":"tokens","param":null,"code":"rate_limit_exceeded"}}',
            4.585,
        ),
        ('{"error":{"message":"Please try again in 20ms.","code":"rate_limit_exceeded"}}', 0.020),
        ('{"error":{"message":"Please try again in 1m30s."}}', 90.0),
        (
            '{"error":{"code":"429","message":"Requests to the Embeddings_Create Operation under Azure '
            'OpenAI API version 2024-02-01 have exceeded call rate limit of your current OpenAI S0 '
            'pricing tier. Please retry after 6 seconds."}}',
            6.0,
        ),
        ("Please retry after 1 second", 1.0),
        ("try again in 250 milliseconds", 0.25),
        ({"error": {"message": "Please try again in 2s."}}, 2.0),
    ],
)
def test_retry_after_from_body(body: bytes | str | dict[str, object], seconds: float) -> None:
    info = parse_rate_limit_headers({}, body)
    assert info.retry_after == pytest.approx(seconds)


def test_retry_after_header_beats_body() -> None:
    body = b'{"error":{"message":"Please try again in 4.585s."}}'
    assert parse_rate_limit_headers({"retry-after": "1"}, body).retry_after == 1.0


@pytest.mark.parametrize(
    "body",
    [b"", b"not json at all", b"\xff\xfe", "{}", "[1, 2]", '"text"', b'{"error": null}', "try again in 99h"],
)
def test_retry_after_body_without_hint(body: bytes | str) -> None:
    assert parse_rate_limit_headers({}, body).retry_after is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.0004, "0s"),
        (0.012, "12ms"),
        (1.0, "1s"),
        (360.0, "6m0s"),
        (90.5, "1m30.5s"),
        (7200.5, "2h0m0.5s"),
        (59.9996, "1m0s"),
    ],
)
def test_format_duration_examples(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [-0.001, math.nan, math.inf])
def test_format_duration_rejects_invalid(seconds: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        format_duration(seconds)


@given(st.floats(min_value=0.0, max_value=MAX_DURATION - 0.001, allow_nan=False))
def test_duration_round_trip(seconds: float) -> None:
    parsed = parse_duration(format_duration(seconds))
    assert parsed is not None
    assert abs(parsed - seconds) <= 0.001


@given(st.text(max_size=40))
def test_parse_duration_never_raises_and_is_bounded(text: str) -> None:
    parsed = parse_duration(text, now=NOW)
    if parsed is not None:
        assert math.isfinite(parsed)
        assert 0.0 <= parsed <= MAX_DURATION


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
                "retry-after",
                "retry-after-ms",
            ]
        ),
        st.text(max_size=30),
    ),
    st.one_of(st.none(), st.binary(max_size=60), st.text(max_size=60)),
)
def test_headers_never_raise_and_are_bounded(headers: dict[str, str], body: bytes | str | None) -> None:
    info = parse_rate_limit_headers(headers, body, now=NOW)
    for value in (info.reset_tokens, info.retry_after):
        if value is not None:
            assert 0.0 <= value <= MAX_DURATION
    for count in (info.limit_requests, info.remaining_tokens):
        if count is not None:
            assert count >= 0
