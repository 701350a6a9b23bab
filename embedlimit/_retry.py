"""When to retry a failed request, and how long to wait first.

The decisions follow openai-python's `_base_client` (`_should_retry` and
`_calculate_retry_timeout`, version 3.60): it obeys `x-should-retry`, then retries 408, 409, 429
and 5xx. This module adds the error classes of `embedlimit._errors`:

=====================================  ===========================  ==========================
failure                                error class                  action
=====================================  ===========================  ==========================
`x-should-retry: false`                any                          give up
429 `insufficient_quota`, billing      QuotaExceededError (fatal)   give up, stop the run
401, 403                               AuthenticationError (fatal)  give up, stop the run
400, 413, 422                          InputError                   give up: fix the input
429 rate limit                         RateLimitError               wait the hint, else backoff
408, 409, 5xx                          ServerError                  wait the hint, else backoff
connection refused or reset, DNS, TLS  TransportError               backoff
request timeout                        RequestTimeoutError          backoff
malformed or inconsistent response     InvalidResponseError         backoff
other status, `x-should-retry: true`   ServerError                  backoff
other status                           FatalError                   give up, stop the run
=====================================  ===========================  ==========================

Backoff is exponential with full jitter: a uniform delay between 0 and
`min(max_delay, base_delay * 2 ** (attempt - 1))`. A server hint (`retry_after`) replaces it,
clamped to `[0, max_delay]`; openai-python instead gives up on hints above its maximum. A policy
also gives up after `max_attempts` attempts, or when the next delay would end past `max_elapsed`
seconds from the first attempt.

`backoff.expo` supplies the exponential cap. `backoff.full_jitter` is not used, because it draws
from the global `random` module, and tests need a seeded `random.Random`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import backoff

from embedlimit._clock import Clock
from embedlimit._errors import ConfigurationError, EmbedLimitError, RetryableError, error_from_exception

__all__ = ["RetryPolicy", "call_with_retries"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RetryPolicy:
    """Pure retry decisions: `delay_for(attempt, error)` returns the delay, or None to give up.

    `attempt` counts from 1. `rng` is the source of jitter, seeded in tests; by default a
    `random.Random()` seeded from the system.
    """

    def __init__(
        self,
        max_attempts: int = 8,
        max_elapsed: float = 600.0,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be a whole number >= 1, got {max_attempts!r}")
        for name, value in (("max_elapsed", max_elapsed), ("base_delay", base_delay), ("max_delay", max_delay)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigurationError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        if base_delay > max_delay:
            raise ConfigurationError(
                f"base_delay {base_delay} s exceeds max_delay {max_delay} s; lower base_delay or raise max_delay."
            )
        self.max_attempts = max_attempts
        self.max_elapsed = float(max_elapsed)
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self.rng = rng if rng is not None else random.Random()

    def delay_for(self, attempt: int, error: BaseException, *, elapsed: float = 0.0) -> float | None:
        """Return the seconds to wait before attempt `attempt + 1`, or None to give up.

        `error` is what attempt `attempt` raised, and `elapsed` the seconds since the first attempt
        began. Errors other than embedlimit's are classified by `error_from_exception`.
        """
        classified = error if isinstance(error, EmbedLimitError) else error_from_exception(error)
        if not self.is_retryable(classified):
            return None
        if attempt >= self.max_attempts:
            return None

        assert isinstance(classified, RetryableError)
        hint = classified.retry_after
        if hint is not None and math.isfinite(hint):
            delay = min(self.max_delay, max(0.0, hint))
        else:
            delay = self.rng.uniform(0.0, self.backoff_cap(attempt))
        if elapsed + delay > self.max_elapsed:
            return None
        return delay

    def is_retryable(self, error: BaseException | None) -> bool:
        """Return whether the error class and the server's `x-should-retry` allow another attempt."""
        if not isinstance(error, RetryableError):
            return False
        return error.should_retry is not False

    def backoff_cap(self, attempt: int) -> float:
        """Return the upper bound of the jittered delay after attempt `attempt`."""
        delays = backoff.expo(base=2, factor=self.base_delay, max_value=self.max_delay)
        next(delays)  # backoff's generators yield None once before the first delay
        cap = next(itertools.islice(delays, max(0, attempt - 1), None))
        return float(min(cap, self.max_delay))

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self.max_attempts}, max_elapsed={self.max_elapsed:g}, "
            f"base_delay={self.base_delay:g}, max_delay={self.max_delay:g})"
        )


RetryCallback = Callable[[int, BaseException, float], None]


async def call_with_retries(
    call: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    clock: Clock,
    on_retry: RetryCallback | None = None,
) -> T:
    """Await `call(attempt)` until it succeeds or `policy` gives up, then re-raise the last error.

    Before each retry, `on_retry(attempt, error, delay)` runs, and then the loop sleeps `delay`
    on `clock`. Cancellation is never retried.
    """
    start = clock.now()
    for attempt in itertools.count(1):
        try:
            return await call(attempt)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            delay = policy.delay_for(attempt, error, elapsed=clock.now() - start)
            if delay is None:
                logger.debug("attempt %d failed and is not retried: %s", attempt, type(error).__name__)
                raise
            logger.info("attempt %d failed (%s); retrying in %.3f s", attempt, _describe(error), delay)
            if on_retry is not None:
                on_retry(attempt, error, delay)
            await clock.sleep(delay)
    raise AssertionError("unreachable: itertools.count never ends")  # pragma: no cover


def _describe(error: BaseException) -> str:
    if isinstance(error, EmbedLimitError):
        parts = [type(error).__name__, f"status {error.status}" if error.status is not None else ""]
        if error.request_id:
            parts.append(f"request_id {error.request_id}")
        return ", ".join(part for part in parts if part)
    return type(error).__name__
