"""The one door through which time enters embedlimit.

The limiter and the retry loop never call `time` or `asyncio.sleep` directly: they take a `Clock`.
Production code uses `LoopClock`, and tests pass a fake clock and move time by hand. Benchmarks
and the simulator share a `ScaledClock`, so that a limit-minute passes in a second of real time.
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of monotonic time in seconds, and a way to wait."""

    def now(self) -> float:
        """Return the current time in seconds on a monotonic scale with an arbitrary origin."""
        ...

    async def sleep(self, delay: float) -> None:
        """Wait `delay` seconds of this clock's time; a delay of zero or less only yields."""
        ...


class LoopClock:
    """The running event loop's monotonic clock, as aiolimiter and asyncio's own timeouts use."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(max(0.0, delay))

    def __repr__(self) -> str:
        return "LoopClock()"


class ScaledClock:
    """The loop clock sped up `scale` times: with scale 60, one real second is one clock minute.

    A client and the simulator that share the same scale agree on every duration in the
    rate-limit headers, so a job bound by per-minute limits can be tested in seconds.
    """

    def __init__(self, scale: float) -> None:
        if not scale > 0:
            raise ValueError(f"clock scale must be a positive number, got {scale!r}")
        self.scale = float(scale)

    def now(self) -> float:
        return asyncio.get_running_loop().time() * self.scale

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(max(0.0, delay) / self.scale)

    def __repr__(self) -> str:
        return f"ScaledClock(scale={self.scale:g})"


class FakeClock:
    """A clock for tests: time moves only when `advance` or autojump moves it.

    `sleep(delay)` registers a sleeper that wakes once the clock reaches its deadline. `advance`
    wakes every sleeper that is due. Those run on later iterations of the event loop, so a test
    yields (for example `await asyncio.sleep(0)` a few times) before it checks their effect.

    With `autojump=True` a helper task jumps to the earliest deadline whenever the program looks
    idle, in the spirit of trio's `MockClock(autojump_threshold=0)`. asyncio offers no public way
    to ask whether any task is runnable, so "idle" is approximated: the helper yields to the loop
    `idle_yields` times, and jumps only if nothing called `now`, `sleep` or `advance` meanwhile.
    NOTE: autojump is only sound for code that waits on this clock and on other tasks. A task
    awaiting real I/O (a socket, a subprocess, a thread) looks idle, so time jumps under it.
    """

    def __init__(self, start: float = 0.0, *, autojump: bool = False, idle_yields: int = 20) -> None:
        if idle_yields < 1:
            raise ValueError(f"idle_yields must be at least 1, got {idle_yields}")
        self._now = float(start)
        self.autojump = autojump
        self.idle_yields = idle_yields
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._next_order = 0
        self._activity = 0
        self._jumper: asyncio.Task[None] | None = None

    def now(self) -> float:
        self._activity += 1
        return self._now

    async def sleep(self, delay: float) -> None:
        self._activity += 1
        if not delay > 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + delay, self._next_order, future))
        self._next_order += 1
        if self.autojump:
            self._start_jumper()
        await future

    def advance(self, delay: float) -> None:
        """Move time forward by `delay` seconds and wake every sleeper whose deadline has come."""
        if not delay >= 0:
            raise ValueError(f"a clock can only move forward, got a delay of {delay!r}")
        self._activity += 1
        self._now += delay
        self._wake_due()

    def next_deadline(self) -> float | None:
        """Return the earliest deadline of a pending sleeper, or None when no task sleeps."""
        self._drop_finished()
        return self._sleepers[0][0] if self._sleepers else None

    @property
    def sleepers(self) -> int:
        """Number of tasks sleeping on this clock."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def _drop_finished(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    def _start_jumper(self) -> None:
        if self._jumper is None or self._jumper.done():
            self._jumper = asyncio.get_running_loop().create_task(self._jump_when_idle())

    async def _jump_when_idle(self) -> None:
        while self.autojump and self.next_deadline() is not None:
            activity = self._activity
            for _ in range(self.idle_yields):
                await asyncio.sleep(0)
            deadline = self.next_deadline()
            if deadline is not None and self._activity == activity:
                self._now = max(self._now, deadline)
                self._wake_due()

    def __repr__(self) -> str:
        mode = ", autojump=True" if self.autojump else ""
        return f"FakeClock(now={self._now:g}{mode}, sleepers={self.sleepers})"
