"""Adaptive concurrency: how many requests may wait on the network at once.

The rate limiter sets the pace of requests; this only bounds how many are in flight, so that a
slow or struggling server is not buried under open requests. The bound follows AIMD, as TCP
congestion control does: it grows while responses come back fast and clean, and it is cut by a
factor on a congestion signal (a 429, a timeout, a 5xx or a broken connection, or a latency far
above the usual for requests of that size).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["AimdController", "ConcurrencyGate"]


class AimdController:
    """The concurrency limit, between `floor` and `ceiling`, moved by additive increase and multiplicative decrease.

    Until the first congestion signal the limit grows by one per success, doubling each round
    trip (slow start). After that it grows by one per `limit` successes, about one per round trip.
    A congestion signal multiplies it by `decrease`, at most once per `limit` results, so one burst
    of 429s from the requests already in flight counts once.
    """

    def __init__(
        self,
        floor: int = 1,
        ceiling: int = 64,
        *,
        initial: int | None = None,
        decrease: float = 0.5,
        latency_tolerance: float = 3.0,
    ) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError(f"concurrency floor {floor} and ceiling {ceiling} must satisfy 1 <= floor <= ceiling")
        if not 0 < decrease < 1:
            raise ValueError(f"decrease factor must be between 0 and 1, got {decrease}")
        if not latency_tolerance > 1:
            raise ValueError(f"latency tolerance must be above 1, got {latency_tolerance}")

        self.floor = floor
        self.ceiling = ceiling
        self.decrease = decrease
        self.latency_tolerance = latency_tolerance
        self._limit = float(min(ceiling, max(floor, initial if initial is not None else min(ceiling, 4))))
        self._slow_start = True
        self._results_since_decrease = 0
        self._latency = LatencyBaseline()
        self.decreases = 0

    @property
    def limit(self) -> int:
        """The whole number of requests allowed in flight now."""
        return int(self._limit)

    def record_success(self, latency: float, tokens: int) -> None:
        """Record a clean response after `latency` seconds for a request of `tokens` tokens."""
        self._results_since_decrease += 1
        slow = self._latency.is_slow(latency, tokens, self.latency_tolerance)
        self._latency.record(latency, tokens)
        if slow:
            self._decrease()
            return
        step = 1.0 if self._slow_start else 1.0 / self._limit
        self._limit = min(float(self.ceiling), self._limit + step)

    def record_congestion(self) -> None:
        """Record a congestion signal: a 429, a timeout, a server error or a broken connection."""
        self._results_since_decrease += 1
        self._decrease()

    def _decrease(self) -> None:
        self._slow_start = False
        if self.decreases and self._results_since_decrease < self._limit:
            return
        self._limit = max(float(self.floor), self._limit * self.decrease)
        self._results_since_decrease = 0
        self.decreases += 1


class LatencyBaseline:
    """The usual latency of a request, by size class, so a large request is not judged as a small one.

    Requests fall into classes by the power of two of their tokens. Each class keeps a baseline
    that drops at once to a faster latency and creeps up slowly, by `drift` of the gap, towards
    slower ones, so the server's normal drift moves it but a sudden slowdown stands out.

    NOTE: a slowdown that builds up over many requests (a server queueing more and more) moves
    the baseline with it, so only 429s, timeouts and errors then lower the limit.
    """

    def __init__(self, drift: float = 0.05, warmup: int = 5) -> None:
        self.drift = drift
        self.warmup = warmup
        self._baselines: dict[int, float] = {}
        self._counts: dict[int, int] = collections.defaultdict(int)

    def record(self, latency: float, tokens: int) -> None:
        size_class = max(0, tokens).bit_length()
        self._counts[size_class] += 1
        baseline = self._baselines.get(size_class)
        if baseline is None or latency < baseline:
            self._baselines[size_class] = latency
        else:
            self._baselines[size_class] = baseline + self.drift * (latency - baseline)

    def is_slow(self, latency: float, tokens: int, tolerance: float) -> bool:
        """Whether `latency` exceeds `tolerance` times the baseline of its size class, once warmed up."""
        size_class = max(0, tokens).bit_length()
        if self._counts[size_class] < self.warmup:
            return False
        return latency > tolerance * self._baselines[size_class]


class ConcurrencyGate:
    """A semaphore whose size follows an `AimdController`, with waiters served first in, first out."""

    def __init__(self, controller: AimdController) -> None:
        self.controller = controller
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiters)

    async def acquire(self) -> None:
        """Wait for a slot; cancelling the wait gives up the slot if it was already granted."""
        if not self._waiters and self.in_flight < self.controller.limit:
            self.in_flight += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give back a slot, and let waiters in while the limit allows."""
        self.in_flight -= 1
        self.wake()

    def wake(self) -> None:
        """Let waiters in up to the controller's current limit; call it after the limit grows."""
        while self._waiters and self.in_flight < self.controller.limit:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            waiter.set_result(None)
            self.in_flight += 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()
