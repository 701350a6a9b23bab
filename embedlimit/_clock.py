"""The one door through which time enters embedlimit.

The limiter and the retry loop never call `time` or `asyncio.sleep` directly: they take a `Clock`.
Production code uses `LoopClock`; tests pass a fake clock and move time by hand; benchmarks and the
simulator share a `ScaledClock` so that a limit-minute passes in a second of real time.
"""

from __future__ import annotations

import asyncio
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
