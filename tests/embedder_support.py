"""Shared helpers for the Embedder tests: simulator settings, vector checks, task inspection."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy

from embedlimit._embedder import Embedder
from embedlimit.testing import Simulator, expected_vector

KEY = "sk-test-embedder-key-0001abcd"
KEYS = [KEY, "sk-test-embedder-key-0002efgh", "sk-test-embedder-key-0003ijkl"]

TIME_SCALE = 1000.0
"""Simulated seconds per real second: a retry delay of 0.5 s takes half a millisecond."""

PACKAGE_DIR = Path(__import__("embedlimit").__file__).resolve().parent


def make_simulator(**options: Any) -> Simulator:
    settings: dict[str, Any] = {"keys": KEYS, "time_scale": TIME_SCALE, "seed": 0}
    settings.update(options)
    return Simulator(**settings)


def make_embedder(sim: Simulator, **options: Any) -> Embedder:
    settings: dict[str, Any] = {"api_key": KEY, "base_url": sim.base_url, "clock": sim.clock}
    settings.update(options)
    return Embedder(**settings)


def assert_vector_of(vector: object, text: str, *, dimensions: int | None = None) -> None:
    expected = expected_vector(text, dimensions=dimensions)
    assert vector is not None, f"no vector for {text!r}"
    assert len(vector) == len(expected)  # type: ignore[arg-type]
    assert numpy.allclose(numpy.asarray(vector, dtype=numpy.float64), expected, atol=1e-6), f"wrong vector for {text!r}"


def weighted_unit_average(texts: Sequence[str], weights: Sequence[float]) -> numpy.ndarray[Any, Any]:
    stacked = numpy.array([expected_vector(text) for text in texts], dtype=numpy.float64)
    mean = numpy.average(stacked, axis=0, weights=numpy.asarray(weights, dtype=numpy.float64))
    return mean / math.sqrt(float(numpy.dot(mean, mean)))


def embedder_tasks() -> list[asyncio.Task[Any]]:
    """Return the unfinished tasks whose coroutine comes from embedlimit, excluding the simulator's handlers."""
    tasks = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task() or task.done():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        filename = Path(code.co_filename).resolve() if code is not None else None
        if filename is None or PACKAGE_DIR not in filename.parents:
            continue
        if (PACKAGE_DIR / "testing") in filename.parents:
            continue
        tasks.append(task)
    return tasks


async def settle(rounds: int = 20) -> None:
    """Let the event loop run callbacks and finished tasks for a few iterations."""
    for _ in range(rounds):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def threaded_simulator(**options: Any) -> AsyncIterator[Simulator]:
    """Run a simulator on its own event loop in a thread, so `asyncio.all_tasks()` shows only the client's tasks.

    Both loops read the same monotonic clock, so `sim.clock` is valid on the test's loop too.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="simulator", daemon=True)
    thread.start()
    sim = make_simulator(**options)
    try:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(sim.start(), loop))
        try:
            yield sim
        finally:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(sim.stop(), loop))
    finally:
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 10.0)
        loop.close()
