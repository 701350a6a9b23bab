"""Serve a simulator in the foreground until SIGINT or SIGTERM, for `embedlimit simulate`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from typing import TextIO

from embedlimit.testing._config import SimulatorConfig
from embedlimit.testing._simulator import Simulator
from embedlimit.testing._stats import SimulatorStats

__all__ = ["serve_until_stopped"]

logger = logging.getLogger(__name__)


async def serve_until_stopped(
    config: SimulatorConfig, *, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr
) -> SimulatorStats:
    """Start a simulator, print its base URL, serve until SIGINT or SIGTERM, return its counters.

    The first line on `stdout` is the OpenAI base URL alone, so a script can read it.
    """
    stop = asyncio.Event()
    async with Simulator(config) as sim:
        print(sim.base_url, file=stdout, flush=True)
        print(
            f"Serving OpenAI embeddings at {sim.base_url} and Azure OpenAI at {sim.azure_endpoint}; "
            "press Ctrl+C to stop.",
            file=stderr,
            flush=True,
        )
        with _stop_on_signals(stop):
            await stop.wait()
        stats = sim.stats()
    print(
        f"Stopped after {stats.requests} requests ({stats.inputs_embedded} inputs embedded, "
        f"{sum(stats.rate_limited.values())} rate-limited).",
        file=stderr,
        flush=True,
    )
    return stats


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signal_number, stop.set)
        except (NotImplementedError, RuntimeError):
            # NOTE: Windows event loops and non-main threads have no signal handlers; there
            # Ctrl+C raises KeyboardInterrupt, which also stops the simulator.
            logger.debug("cannot install a handler for %s", signal_number.name)
            continue
        installed.append(signal_number)
    try:
        yield
    finally:
        for signal_number in installed:
            loop.remove_signal_handler(signal_number)
