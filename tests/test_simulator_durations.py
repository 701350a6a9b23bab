"""The OpenAI duration format of reset headers and 429 messages."""

from __future__ import annotations

import pytest

from embedlimit.testing import format_duration
from embedlimit.testing._durations import ceil_milliseconds, ceil_seconds


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, "0s"),
        (-3.0, "0s"),
        (0.0004, "1ms"),
        (0.012, "12ms"),
        (0.02, "20ms"),
        (0.020000000000000018, "20ms"),
        (0.2401, "241ms"),
        (0.999, "999ms"),
        (0.9991, "1s"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (4.585, "4.585s"),
        (59.9999, "1m0s"),
        (60.0, "1m0s"),
        (90.5, "1m30.5s"),
        (360.0, "6m0s"),
        (3600.0, "1h0m0s"),
        (3723.25, "1h2m3.25s"),
    ],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected


def test_ceil_milliseconds_rounds_up() -> None:
    assert ceil_milliseconds(0.0) == 0
    assert ceil_milliseconds(0.0011) == 2
    assert ceil_milliseconds(0.993) == 993
    assert ceil_milliseconds(30.0) == 30000


def test_ceil_seconds_rounds_up() -> None:
    assert ceil_seconds(0.0) == 0
    assert ceil_seconds(0.001) == 1
    assert ceil_seconds(1.0) == 1
    assert ceil_seconds(1.0000000001) == 1
    assert ceil_seconds(29.2) == 30
