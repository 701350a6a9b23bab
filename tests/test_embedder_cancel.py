"""Cancellation and closing: requests in flight end cleanly, with no orphaned tasks or sessions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from embedlimit._embedder import Embedder
from embedlimit._results import EmbedderClosedError
from embedlimit.testing import Simulator
from tests.embedder_support import assert_vector_of, make_embedder, settle, threaded_simulator

pytestmark = [
    pytest.mark.timeout(60),
    # NOTE: in about 1 run of 7, the simulator's server-side socket of a request that hangs on
    # purpose is finalized by the garbage collector after the simulator's loop stopped, instead of
    # being closed (its local address is the simulator's port). Only those two warnings are ignored
    # here; an unclosed client session or connector still fails these tests.
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <function _SelectorTransport.__del__:pytest.PytestUnraisableExceptionWarning"
    ),
    pytest.mark.filterwarnings(r"ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"),
]

TEXTS = [f"cancel test text {number}" for number in range(40)]


@pytest.fixture
async def hanging_sim() -> AsyncIterator[Simulator]:
    """A simulator, on its own loop, whose responses never come until the faults are cleared."""
    async with threaded_simulator(hang_delay=1e9) as simulator:
        simulator.faults.set_rate("hang", 1.0)
        yield simulator


def other_tasks() -> set[asyncio.Task[object]]:
    """Return the unfinished tasks of this loop other than the test's own."""
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task() and not task.done()}


async def wait_for_in_flight(sim: Simulator, count: int = 1) -> None:
    for _ in range(500):
        if sim.stats().in_flight >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} requests reached the simulator")


def assert_idle(embedder: Embedder) -> None:
    assert other_tasks() == set()
    assert embedder._tasks == set()
    assert embedder._gate.in_flight == 0
    for key in embedder._keys.keys:
        assert key.pending == 0
        assert key.limiter.statistics().in_flight == 0


async def test_cancelled_caller_leaves_no_tasks(hanging_sim: Simulator) -> None:
    async with make_embedder(hanging_sim, max_inputs_per_request=10, coalesce_window=0) as embedder:
        call = asyncio.create_task(embedder.embed(TEXTS))
        await wait_for_in_flight(hanging_sim)

        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await settle()

        assert_idle(embedder)
        hanging_sim.faults.set_rate("hang", 0.0)
        vectors = await embedder.embed(TEXTS[:2])

    assert_vector_of(vectors[1], TEXTS[1])


async def test_cancelled_coalesced_caller_spares_others(hanging_sim: Simulator) -> None:
    hanging_sim.faults.set_rate("hang", 0.0)
    hanging_sim.faults.enqueue("hang")
    async with make_embedder(hanging_sim, coalesce_window=5.0, read_timeout=0.5) as embedder:
        calls = [asyncio.create_task(embedder.embed([text])) for text in TEXTS[:5]]
        await wait_for_in_flight(hanging_sim)

        calls[0].cancel()
        results = await asyncio.gather(*calls[1:])

    assert calls[0].cancelled()
    for text, result in zip(TEXTS[1:5], results, strict=True):
        assert_vector_of(result[0], text)


async def test_close_fails_waiting_calls(hanging_sim: Simulator) -> None:
    # With limits given up front the limiter sends no lone probe, so all three calls reach the server.
    embedder = make_embedder(
        hanging_sim, max_inputs_per_request=10, requests_per_minute=100_000, tokens_per_minute=10_000_000
    )
    await embedder.__aenter__()
    large = asyncio.create_task(embedder.embed(TEXTS))
    small = asyncio.create_task(embedder.embed(["web request"]))

    async def consume() -> None:
        async for _ in embedder.embed_stream((number, text) for number, text in enumerate(TEXTS)):
            pass

    stream = asyncio.create_task(consume())
    try:
        await wait_for_in_flight(hanging_sim, 3)
    finally:
        await embedder.aclose()

    for call in (large, small, stream):
        with pytest.raises(EmbedderClosedError):
            await call
    await settle()
    assert other_tasks() == set()
    assert embedder._session is not None
    assert embedder._session.closed


async def test_stream_closed_early_cancels_requests(hanging_sim: Simulator) -> None:
    hanging_sim.faults.set_rate("hang", 0.0)
    async with make_embedder(hanging_sim, max_inputs_per_request=5, max_pending_requests=4) as embedder:
        items = ((number, f"early stop {number}") for number in range(1000))
        async with contextlib.aclosing(embedder.embed_stream(items)) as stream:
            async for result in stream:
                assert result.ok
                hanging_sim.faults.set_rate("hang", 1.0)
                break
        await settle()

        assert_idle(embedder)


async def test_stream_abandoned_after_break_cleans_up(hanging_sim: Simulator) -> None:
    hanging_sim.faults.set_rate("hang", 0.0)
    async with make_embedder(hanging_sim, max_inputs_per_request=5) as embedder:
        async for _ in embedder.embed_stream((number, f"abandon {number}") for number in range(1000)):
            hanging_sim.faults.set_rate("hang", 1.0)
            break
        for _ in range(50):
            await settle()
            if not other_tasks():
                break

        assert_idle(embedder)


async def test_cancelled_stream_consumer_leaves_no_tasks(hanging_sim: Simulator) -> None:
    async with make_embedder(hanging_sim, max_inputs_per_request=5) as embedder:

        async def consume() -> None:
            async with contextlib.aclosing(embedder.embed_stream(enumerate(TEXTS))) as stream:
                async for _ in stream:
                    pass

        consumer = asyncio.create_task(consume())
        await wait_for_in_flight(hanging_sim)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await settle()

        assert_idle(embedder)
