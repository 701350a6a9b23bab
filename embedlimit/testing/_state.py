"""The mutable state of one simulator application, shared by its request handlers."""

from __future__ import annotations

import asyncio
import random

from aiohttp import web

from embedlimit._clock import Clock
from embedlimit.testing._config import SimulatorConfig
from embedlimit.testing._faults import Faults
from embedlimit.testing._limits import QuotaBook, RateLimits
from embedlimit.testing._stats import StatsRecorder

__all__ = ["STATE_KEY", "SimulatorState"]


class SimulatorState:
    """The mutable state behind one simulator application: clock, limits, quota, faults, counters."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.clock: Clock = config.make_clock()
        self.faults = Faults(config.fault_rates, seed=config.seed, hang_delay=config.hang_delay)
        self.quota = QuotaBook(config.quota_tokens)
        self.stats = StatsRecorder(track_inputs=config.track_inputs)
        self.closing = asyncio.Event()
        self._latency_random = random.Random(config.seed)
        self._limits: dict[str, RateLimits] = {}

    def limits_for(self, key: str) -> RateLimits:
        """Return the limits that apply to `key`: the organisation's, or the key's own."""
        scope = key if self.config.limit_scope == "key" else ""
        limits = self._limits.get(scope)
        if limits is None:
            limits = RateLimits(
                self.config.rpm,
                self.config.tpm,
                self.clock.now(),
                request_window=self.config.request_window,
                count_rejected=self.config.count_rejected,
            )
            self._limits[scope] = limits
        return limits

    def reset_limits(self) -> None:
        """Refill every bucket and empty every request window, as if no request had been sent."""
        self._limits.clear()

    def latency(self, tokens: int) -> float:
        """Draw the simulated processing time of a request of `tokens` input tokens, in seconds."""
        config = self.config
        jitter = config.latency_jitter * self._latency_random.random() if config.latency_jitter else 0.0
        return config.latency_base + config.latency_per_token * tokens + jitter

    def known_key(self, key: str) -> bool:
        return self.config.keys is None or key in self.config.keys


STATE_KEY = web.AppKey("embedlimit_simulator_state", SimulatorState)
