"""Counters of an embedder's work: requests, inputs, tokens, retries, 429s, errors, latency, cost."""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from embedlimit._clock import Clock
from embedlimit._errors import EmbedLimitError, QuotaExceededError, RateLimitError

__all__ = ["DEFAULT_PRICES_PER_MILLION_TOKENS", "Metrics", "MetricsSnapshot", "RequestRecord"]

logger = logging.getLogger(__name__)

DEFAULT_PRICES_PER_MILLION_TOKENS: Mapping[str, float] = MappingProxyType(
    {
        "text-embedding-3-small": 0.02,
        "text-embedding-3-large": 0.13,
        "text-embedding-ada-002": 0.10,
    }
)
"""US dollars per million input tokens, from OpenAI's pricing page (standard tier, not Batch API)."""

LATENCY_WINDOW = 10_000
"""Number of most recent requests whose latencies the percentiles are computed from."""


@dataclass(frozen=True)
class RequestRecord:
    """One finished request, as passed to the `on_request` callback.

    `key` is the key's index and fingerprint (such as `#0 sk-...abcd`), never the key. `status`
    is None when no response arrived. `error` is the error's class name, or None on success.
    `tokens` is the server's count when it sent one, else embedlimit's count.
    """

    key: str
    attempt: int
    inputs: int
    tokens: int
    status: int | None
    latency: float
    error: str | None


@dataclass(frozen=True)
class MetricsSnapshot:
    """The counters of an embedder at one moment.

    `rate_limited` counts 429 responses by kind: "requests" and "tokens" for rate limits that
    name their bucket, "unknown" for those that do not, and "quota" for `insufficient_quota` and
    the billing codes. `errors` counts failed requests by error class name. Latency percentiles
    are in seconds over the latest 10,000 requests, None before the first. Rates are per minute
    of clock time since the first request. `estimated_cost_usd` is an estimate: the server's
    token counts times the price table, None for a model missing from the table.
    `dataclasses.asdict(snapshot)` gives a JSON-ready dict.
    """

    elapsed: float
    requests: int
    succeeded_requests: int
    failed_requests: int
    inputs: int
    tokens: int
    retries: int
    skipped_inputs: int
    rate_limited: dict[str, int]
    errors: dict[str, int]
    latency_p50: float | None
    latency_p90: float | None
    latency_p99: float | None
    latency_max: float | None
    requests_per_minute: float
    tokens_per_minute: float
    estimated_cost_usd: float | None
    concurrency_limit: int = 0
    in_flight: int = 0
    active_keys: int = 0
    retired_keys: int = 0


@dataclass
class _Counters:
    requests: int = 0
    succeeded_requests: int = 0
    inputs: int = 0
    tokens: int = 0
    retries: int = 0
    skipped_inputs: int = 0
    rate_limited: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)


class Metrics:
    """Collects counters and latencies, and calls `on_request` after each request.

    An exception from the callback is logged and otherwise ignored, so a broken metrics
    exporter cannot stop the embedding work.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        price_per_million_tokens: float | None,
        on_request: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        self.clock = clock
        self.price_per_million_tokens = price_per_million_tokens
        self.on_request = on_request
        self._counters = _Counters()
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self._started: float | None = None
        self._callback_failures = 0

    def start_request(self) -> None:
        """Note the start of a request, so rates count from the first."""
        if self._started is None:
            self._started = self.clock.now()

    def record_request(self, record: RequestRecord, error: EmbedLimitError | None = None) -> None:
        counters = self._counters
        counters.requests += 1
        self._latencies.append(record.latency)
        if error is None:
            counters.succeeded_requests += 1
            counters.inputs += record.inputs
            counters.tokens += record.tokens
        else:
            counters.errors[type(error).__name__] += 1
            if record.status == 429:
                counters.rate_limited[_rate_limit_kind(error)] += 1
        self._notify(record)

    def record_retry(self) -> None:
        self._counters.retries += 1

    def record_skipped(self, count: int = 1) -> None:
        self._counters.skipped_inputs += count

    def snapshot(self, **state: int) -> MetricsSnapshot:
        """Return the counters now; `state` sets the concurrency and key fields."""
        counters = self._counters
        elapsed = 0.0 if self._started is None else max(0.0, self.clock.now() - self._started)
        minutes = elapsed / 60.0
        latencies = sorted(self._latencies)
        return MetricsSnapshot(
            elapsed=elapsed,
            requests=counters.requests,
            succeeded_requests=counters.succeeded_requests,
            failed_requests=counters.requests - counters.succeeded_requests,
            inputs=counters.inputs,
            tokens=counters.tokens,
            retries=counters.retries,
            skipped_inputs=counters.skipped_inputs,
            rate_limited=dict(counters.rate_limited),
            errors=dict(counters.errors),
            latency_p50=_percentile(latencies, 0.50),
            latency_p90=_percentile(latencies, 0.90),
            latency_p99=_percentile(latencies, 0.99),
            latency_max=latencies[-1] if latencies else None,
            requests_per_minute=counters.requests / minutes if minutes > 0 else 0.0,
            tokens_per_minute=counters.tokens / minutes if minutes > 0 else 0.0,
            estimated_cost_usd=self._estimated_cost(counters.tokens),
            **state,
        )

    def _estimated_cost(self, tokens: int) -> float | None:
        if self.price_per_million_tokens is None:
            return None
        return tokens / 1_000_000 * self.price_per_million_tokens

    def _notify(self, record: RequestRecord) -> None:
        if self.on_request is None:
            return
        try:
            self.on_request(record)
        except Exception:
            self._callback_failures += 1
            # Logged on the 1st, 10th, 100th... failure so a broken callback cannot flood the log.
            if math.log10(self._callback_failures).is_integer():
                logger.exception("on_request callback failed (%d failures so far)", self._callback_failures)


def _rate_limit_kind(error: EmbedLimitError) -> str:
    if isinstance(error, QuotaExceededError):
        return "quota"
    if isinstance(error, RateLimitError) and error.limit_type is not None:
        return error.limit_type
    return "unknown"


def _percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Return the nearest-rank percentile of already sorted values, or None when there are none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]
