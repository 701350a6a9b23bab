"""Progress output for the command line: a live bar on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time
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


def describe_rates(metrics: MetricsSnapshot, limits: tuple[float | None, float | None]) -> str:
    """Return the achieved RPM and TPM against the limits, and the 429s, on one line."""
    tokens_per_minute, requests_per_minute = limits
    rate_limited = sum(metrics.rate_limited.values())
    return (f"RPM {_format_rate(metrics.requests_per_minute, requests_per_minute)}  "
            f"TPM {_format_rate(metrics.tokens_per_minute, tokens_per_minute)}  429s {rate_limited}")


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

    def __enter__(self) -> ProgressDisplay:
        if self._live:
            self._bar = Progress(
                TextColumn("embedding"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[limits]}"),
                console=self._console, refresh_per_second=4,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("embedding", total=None, rate="", limits="")
        return self

    def update(self, progress: BackfillProgress) -> None:
        """Show the latest counts; cheap enough to call after every write batch."""
        rates = describe_rates(self._metrics(), self._limits())
        nodes_per_second = progress.embedded / progress.elapsed if progress.elapsed > 0 else 0.0
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=progress.embedded, total=progress.total,
                             rate=f"{nodes_per_second:,.0f} nodes/s", limits=rates)
            return
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
