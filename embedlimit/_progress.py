"""Progress output for the command line: a live bar on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from embedlimit._backfill import BackfillProgress
from embedlimit._metrics import MetricsSnapshot

logger = logging.getLogger(__name__)

LOG_INTERVAL = 10.0
"""Seconds between progress log lines when the output is not a terminal."""


def _format_rate(value: float, limit: float | None) -> str:
    if limit:
        return f"{value:,.0f}/{limit:,.0f} ({100 * value / limit:.0f}%)"
    return f"{value:,.0f}"


RATE_WINDOW = 60.0
"""Seconds of the embedder's clock over which the shown RPM and TPM are measured."""


class RateWindow:
    """Requests and tokens per minute over the last `RATE_WINDOW` seconds of the embedder's clock.

    The metrics' own rates are averages since the first request, which the starting burst (a full
    minute of tokens at once) pushes above the limit for the whole first minutes of a run.
    """

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int, int]] = deque()

    def rates(self, metrics: MetricsSnapshot) -> tuple[float, float]:
        """Add a sample and return (requests per minute, tokens per minute) over the window."""
        self._samples.append((metrics.elapsed, metrics.requests, metrics.tokens))
        while len(self._samples) > 2 and metrics.elapsed - self._samples[1][0] >= RATE_WINDOW:
            self._samples.popleft()
        start, requests, tokens = self._samples[0]
        span = metrics.elapsed - start
        if span < 1.0:
            return metrics.requests_per_minute, metrics.tokens_per_minute
        return 60.0 * (metrics.requests - requests) / span, 60.0 * (metrics.tokens - tokens) / span


def describe_rates(metrics: MetricsSnapshot, limits: tuple[float | None, float | None],
                   rates: tuple[float, float] | None = None, *, compact: bool = False) -> str:
    """Return the achieved RPM and TPM against the limits, and the 429s, on one line.

    The compact form gives only the share of each limit, so that the progress bar fits in 80 columns.
    """
    tokens_per_minute, requests_per_minute = limits
    requests_rate, tokens_rate = rates or (metrics.requests_per_minute, metrics.tokens_per_minute)
    rate_limited = sum(metrics.rate_limited.values())
    if compact:
        return (f"RPM {_share(requests_rate, requests_per_minute)} TPM {_share(tokens_rate, tokens_per_minute)} "
                f"429s {rate_limited}")
    return (f"RPM {_format_rate(requests_rate, requests_per_minute)}  "
            f"TPM {_format_rate(tokens_rate, tokens_per_minute)}  429s {rate_limited}")


def _share(value: float, limit: float | None) -> str:
    if limit:
        return f"{100 * value / limit:.0f}%"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


class ProgressDisplay:
    """Shows backfill progress; use as a context manager and pass `update` as `on_progress`.

    On a terminal it draws a bar with nodes done of total, rate, time remaining, achieved RPM and
    TPM against the limits, and 429s. Otherwise it logs the same figures every `LOG_INTERVAL`
    seconds at INFO.
    """

    def __init__(self, metrics: Callable[[], MetricsSnapshot],
                 limits: Callable[[], tuple[float | None, float | None]], *, stream: TextIO | None = None,
                 force_terminal: bool | None = None) -> None:
        self._metrics = metrics
        self._limits = limits
        stream = stream or sys.stderr
        self._console = Console(file=stream, force_terminal=force_terminal)
        self._live = self._console.is_terminal
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last_log = 0.0
        self._window = RateWindow()

    def __enter__(self) -> ProgressDisplay:
        if self._live:
            self._bar = Progress(
                BarColumn(bar_width=16), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[limits]}"),
                console=self._console, refresh_per_second=4,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("embedding", total=None, rate="", limits="")
        return self

    def update(self, progress: BackfillProgress) -> None:
        """Show the latest counts; cheap enough to call after every write batch."""
        metrics = self._metrics()
        window = self._window.rates(metrics)
        nodes_per_second = progress.embedded / progress.elapsed if progress.elapsed > 0 else 0.0
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=progress.embedded, total=progress.total,
                             rate=f"{nodes_per_second:,.0f}/s",
                             limits=describe_rates(metrics, self._limits(), window, compact=True))
            return
        rates = describe_rates(metrics, self._limits(), window)
        now = time.monotonic()
        if now - self._last_log >= LOG_INTERVAL:
            self._last_log = now
            total = "?" if progress.total is None else f"{progress.total:,}"
            logger.info("embedded %s of %s nodes (%.0f nodes/s), %d failed; %s",
                        f"{progress.embedded:,}", total, nodes_per_second, progress.failed, rates)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, error, traceback)
