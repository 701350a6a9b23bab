"""Parse the rate-limit headers and retry hints that OpenAI and compatible servers send.

OpenAI sends `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` on every response. Limits and
remaining amounts are integers, and a reset is the time until the bucket is full again, written
as a duration such as `1s`, `6m0s` or `12ms`. Azure OpenAI sends plain seconds (`8`), and some
servers send an absolute time instead (RFC 3339 or HTTP-date). A 429 may carry `retry-after-ms`,
`retry-after` (seconds or HTTP-date), or only a phrase in its body ("Please try again in 4.585s").

Nothing here raises on what a server sends. A value that is garbage, negative, not finite, or a
duration longer than `MAX_DURATION` is dropped with a DEBUG log line, so a broken header can
never turn into a long sleep.
"""

from __future__ import annotations

import email.utils
import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

__all__ = [
    "MAX_DURATION",
    "RateLimitInfo",
    "format_duration",
    "parse_duration",
    "parse_rate_limit_headers",
]

logger = logging.getLogger(__name__)

MAX_DURATION = 86_400.0
"""Maximum duration in seconds that a header may set; longer values are ignored as garbage."""

_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}

# `ms` must come before `m` in the alternation, or `20ms` would parse as 20 minutes and a stray `s`.
_DURATION_PART = r"(?:\d+(?:\.\d*)?|\.\d+)(?:ms|h|m|s)"
_DURATION_RE = re.compile(rf"(?:{_DURATION_PART})+")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)

# "Please try again in 4.585s", "try again in 20ms", "Please retry after 3 seconds".
_BODY_HINT_RE = re.compile(
    rf"(?:try again in|retry after)\s+(?P<value>(?:{_DURATION_PART})+|\d+(?:\.\d+)?)"
    r"(?:\s*(?P<unit>milliseconds?|seconds?|secs?)\b)?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RateLimitInfo:
    """Rate-limit state reported by one response; any field is None when absent or invalid.

    Resets and `retry_after` are in seconds from when the response was received.
    """

    limit_requests: int | None = None
    limit_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests: float | None = None
    reset_tokens: float | None = None
    retry_after: float | None = None

    @property
    def has_limits(self) -> bool:
        """Whether the response reported any limit, remaining amount or reset."""
        values = (
            self.limit_requests,
            self.limit_tokens,
            self.remaining_requests,
            self.remaining_tokens,
            self.reset_requests,
            self.reset_tokens,
        )
        return any(value is not None for value in values)


def parse_rate_limit_headers(
    headers: Mapping[str, str],
    body: bytes | str | Mapping[str, Any] | None = None,
    *,
    now: float | None = None,
) -> RateLimitInfo:
    """Parse rate-limit headers, and a 429 body's retry hint, into a `RateLimitInfo`.

    `headers` may be any mapping; keys are matched case-insensitively. `now` is the wall-clock
    time in Unix seconds used to turn absolute timestamps into durations (default: `time.time()`).
    """
    lowered = _lowercase_keys(headers)
    wall_now = time.time() if now is None else now

    def duration(name: str) -> float | None:
        return _parse_header_duration(name, lowered.get(name), wall_now)

    def count(name: str) -> int | None:
        return _parse_count(name, lowered.get(name))

    return RateLimitInfo(
        limit_requests=count("x-ratelimit-limit-requests"),
        limit_tokens=count("x-ratelimit-limit-tokens"),
        remaining_requests=count("x-ratelimit-remaining-requests"),
        remaining_tokens=count("x-ratelimit-remaining-tokens"),
        reset_requests=duration("x-ratelimit-reset-requests"),
        reset_tokens=duration("x-ratelimit-reset-tokens"),
        retry_after=_parse_retry_after(lowered, body, wall_now),
    )


def parse_duration(text: str, *, now: float | None = None) -> float | None:
    """Parse a duration in seconds, or None when `text` is not a valid one.

    Accepted forms: OpenAI's unit form (`6m0s`, `1m30.5s`, `20ms`, `2h0m0.5s`), a plain number of
    seconds (`8`, `0.5`), and an absolute RFC 3339 or HTTP-date time. An absolute time becomes the
    seconds from `now` (Unix seconds, default `time.time()`) until it, or 0 once it has passed.
    Negative, non-finite and longer than `MAX_DURATION` values return None.
    """
    text = text.strip()
    seconds = _parse_relative(text)
    if seconds is None:
        seconds = _parse_absolute(text, time.time() if now is None else now)
    if seconds is None or not math.isfinite(seconds) or not 0.0 <= seconds <= MAX_DURATION:
        return None
    return seconds


def format_duration(seconds: float) -> str:
    """Format seconds in OpenAI's reset form, rounded to the millisecond: `0s`, `20ms`, `1s`, `6m0s`.

    Raises ValueError for a negative or non-finite value.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"duration must be a finite number of seconds >= 0, got {seconds!r}")
    total_ms = round(seconds * 1000)
    if total_ms == 0:
        return "0s"
    if total_ms < 1000:
        return f"{total_ms}ms"

    hours, rest_ms = divmod(total_ms, 3_600_000)
    minutes, rest_ms = divmod(rest_ms, 60_000)
    whole_seconds, millis = divmod(rest_ms, 1000)
    second_text = f"{whole_seconds}.{millis:03d}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{second_text}s"
    if minutes:
        return f"{minutes}m{second_text}s"
    return f"{second_text}s"


def _lowercase_keys(headers: Mapping[str, str]) -> dict[str, str]:
    lowered: dict[str, str] = {}
    for key, value in headers.items():
        lowered.setdefault(str(key).lower(), value)
    return lowered


def _parse_count(name: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    text = str(raw).strip()
    try:
        value = float(text) if _NUMBER_RE.fullmatch(text) else math.nan
    except ValueError:  # pragma: no cover - the pattern admits only what float() reads
        value = math.nan
    if not math.isfinite(value) or value < 0 or value != int(value):
        logger.debug("ignoring header %s: %.40r is not a whole number >= 0", name, text)
        return None
    return int(value)


def _parse_header_duration(name: str, raw: str | None, now: float) -> float | None:
    if raw is None:
        return None
    seconds = parse_duration(str(raw), now=now)
    if seconds is None:
        logger.debug(
            "ignoring header %s: %.40r is not a duration between 0 and %g s", name, raw, MAX_DURATION
        )
    return seconds


def _parse_retry_after(headers: Mapping[str, str], body: object, now: float) -> float | None:
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        millis = _parse_plain_number(raw_ms.strip())
        if millis is not None and 0.0 <= millis / 1000 <= MAX_DURATION:
            return millis / 1000
        logger.debug("ignoring header retry-after-ms: %.40r is not a valid delay", raw_ms)

    retry_after = _parse_header_duration("retry-after", headers.get("retry-after"), now)
    if retry_after is not None:
        return retry_after
    return _parse_body_hint(body)


def _parse_body_hint(body: object) -> float | None:
    text = _body_message(body)
    if not text:
        return None
    match = _BODY_HINT_RE.search(text)
    if match is None:
        return None

    value, unit = match.group("value"), (match.group("unit") or "").lower()
    seconds = _parse_relative(value)
    if seconds is not None and unit.startswith("milli"):
        seconds /= 1000
    if seconds is None or not 0.0 <= seconds <= MAX_DURATION:
        logger.debug("ignoring retry hint in the response body: %.40r", match.group(0))
        return None
    return seconds


def _body_message(body: object) -> str:
    """Return the error message of a JSON error body, or the whole body as text."""
    if body is None:
        return ""
    if isinstance(body, Mapping):
        parsed: object = body
    else:
        raw = body if isinstance(body, bytes | bytearray | memoryview | str) else str(body)
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return bytes(raw).decode("utf-8", "replace") if not isinstance(raw, str) else raw
    error = parsed.get("error") if isinstance(parsed, Mapping) else None
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(parsed, Mapping) and isinstance(parsed.get("message"), str):
        return str(parsed["message"])
    return orjson.dumps(parsed).decode() if not isinstance(parsed, str) else parsed


def _parse_relative(text: str) -> float | None:
    plain = _parse_plain_number(text)
    if plain is not None:
        return plain
    if not _DURATION_RE.fullmatch(text):
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART_RE.findall(text))


def _parse_plain_number(text: str) -> float | None:
    if not _NUMBER_RE.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _parse_absolute(text: str, now: float) -> float | None:
    deadline = _parse_rfc3339(text)
    if deadline is None:
        deadline = _parse_http_date(text)
    if deadline is None:
        return None
    return max(0.0, deadline - now)


def _parse_rfc3339(text: str) -> float | None:
    match = _RFC3339_RE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction = float(match.group(7) or 0.0)
    offset = timedelta(0)
    if match.group(9):
        sign = 1 if match.group(9) == "+" else -1
        offset = sign * timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
    try:
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone(offset))
    except ValueError:
        return None
    return moment.timestamp() + fraction


def _parse_http_date(text: str) -> float | None:
    if not any(character.isalpha() for character in text):
        return None
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
