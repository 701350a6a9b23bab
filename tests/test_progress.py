"""Progress output: windowed rates, the log lines off a terminal, and the live bar on one."""

from __future__ import annotations

import io
import logging

import pytest

from embedlimit._backfill import BackfillProgress
from embedlimit._metrics import MetricsSnapshot
from embedlimit._progress import ProgressDisplay, RateWindow, describe_rates


def _snapshot(elapsed: float, requests: int, tokens: int) -> MetricsSnapshot:
    minutes = max(elapsed, 1e-9) / 60
    return MetricsSnapshot(
        elapsed=elapsed, requests=requests, succeeded_requests=requests, failed_requests=0, inputs=requests,
        tokens=tokens, retries=0, skipped_inputs=0, rate_limited={"tokens": 2}, errors={},
        latency_p50=None, latency_p90=None, latency_p99=None, latency_max=None,
        requests_per_minute=requests / minutes, tokens_per_minute=tokens / minutes, estimated_cost_usd=None,
    )


def test_rate_window_drops_starting_burst() -> None:
    window = RateWindow()
    window.rates(_snapshot(0.5, 20, 1_000_000))  # the starting burst: a full minute of tokens
    for second in range(1, 181):
        rates = window.rates(_snapshot(0.5 + second, 20 + second, 1_000_000 + 16_000 * second))

    requests_per_minute, tokens_per_minute = rates
    assert tokens_per_minute == pytest.approx(960_000, rel=0.02)
    assert requests_per_minute == pytest.approx(60, rel=0.02)


def test_rate_window_short_span_uses_average() -> None:
    snapshot = _snapshot(0.5, 3, 3000)

    assert RateWindow().rates(snapshot) == (snapshot.requests_per_minute, snapshot.tokens_per_minute)


def test_describe_rates_against_limits() -> None:
    snapshot = _snapshot(60, 10, 500_000)

    full = describe_rates(snapshot, (1_000_000, 3000), (10.0, 500_000.0))
    compact = describe_rates(snapshot, (None, None), (10.0, 500_000.0), compact=True)

    assert full == "RPM 10/3,000 (0%)  TPM 500,000/1,000,000 (50%)  429s 2"
    assert compact == "RPM 10 TPM 500.0k 429s 2"


def test_display_logs_off_terminal(caplog: pytest.LogCaptureFixture) -> None:
    progress = BackfillProgress(embedded=40, total=100)
    display = ProgressDisplay(lambda: _snapshot(30, 5, 9000), lambda: (None, None), stream=io.StringIO())

    with caplog.at_level(logging.INFO, logger="embedlimit._progress"), display:
        display.update(progress)
        display.update(progress)

    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1
    assert lines[0].startswith("embedded 40 of 100 nodes")


def test_display_draws_bar_on_terminal() -> None:
    stream = io.StringIO()
    progress = BackfillProgress(embedded=40, total=100)

    with ProgressDisplay(lambda: _snapshot(30, 5, 9000), lambda: (1_000_000, 3000), stream=stream,
                         force_terminal=True) as display:
        display.update(progress)

    output = stream.getvalue()
    assert "40/100" in output
    assert "RPM 0% TPM 2% 429s 2" in output
