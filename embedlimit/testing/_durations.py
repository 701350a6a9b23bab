"""Durations written the way OpenAI and Azure OpenAI write them in rate-limit headers and messages.

OpenAI's rate-limits guide shows `x-ratelimit-reset-requests: 1s` and
`x-ratelimit-reset-tokens: 6m0s`, and live responses carry values such as `12ms`. 429 messages
read "Please try again in 4.585s" or "in 240ms". The shape matches Go's `time.Duration.String()`
rounded to whole milliseconds: below one second a count of milliseconds, from one second up
hours, minutes and seconds with up to three decimals and no trailing zeros.
"""

from __future__ import annotations

import math

__all__ = ["ceil_milliseconds", "ceil_seconds", "format_duration"]


def ceil_milliseconds(seconds: float) -> int:
    """Round a delay up to whole milliseconds, so a client that waits that long is never early.

    Float noise below a microsecond is dropped first, so 0.020000000000000018 s is 20 ms, not 21.
    """
    if seconds <= 0:
        return 0
    return math.ceil(round(seconds * 1000.0, 3))


def ceil_seconds(seconds: float) -> int:
    """Round a delay up to whole seconds, as `retry-after` and Azure's reset headers carry it."""
    if seconds <= 0:
        return 0
    return math.ceil(round(seconds, 6))


def format_duration(seconds: float) -> str:
    """Format a delay in seconds as OpenAI does: `0s`, `20ms`, `1s`, `1.5s`, `6m0s`, `1h2m3.25s`.

    The value is rounded up to a whole millisecond, so a positive delay never prints as `0s`.
    """
    total_ms = ceil_milliseconds(seconds)
    if total_ms == 0:
        return "0s"
    if total_ms < 1000:
        return f"{total_ms}ms"

    hours, rest_ms = divmod(total_ms, 3_600_000)
    minutes, rest_ms = divmod(rest_ms, 60_000)
    whole_seconds, milliseconds = divmod(rest_ms, 1000)
    seconds_text = str(whole_seconds)
    if milliseconds:
        seconds_text += f".{milliseconds:03d}".rstrip("0")

    if hours:
        return f"{hours}h{minutes}m{seconds_text}s"
    if minutes:
        return f"{minutes}m{seconds_text}s"
    return f"{seconds_text}s"
