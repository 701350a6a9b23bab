"""Micro-batching of concurrent small calls into shared requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from embedlimit._clock import FakeClock
from embedlimit._coalescing import Coalescer
from embedlimit._packing import Piece

pytestmark = pytest.mark.timeout(10)


class ClosedError(Exception):
    pass


class Harness:
    """A coalescer whose requests are recorded and answered by the test."""

    def __init__(self, *, max_inputs: int = 8, max_tokens: int = 100) -> None:
        self.clock = FakeClock()
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.coalescer: Coalescer[str] = Coalescer(
            window=0.005,
            max_inputs=max_inputs,
            max_tokens=max_tokens,
            clock=self.clock,
            run=self.run,
            spawn=self.spawn,
            closed_error=lambda: ClosedError("closed"),
        )

    async def run(self, batch: list[Piece]) -> list[str]:
        self.batches.append([piece.text for piece in batch])
        await self.release.wait()
        return [f"vector of {piece.text}" for piece in batch]

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def submit(self, *texts: str, tokens: int = 1) -> asyncio.Task[list[str]]:
        pieces = [Piece(item, text, tokens) for item, text in enumerate(texts)]
        return asyncio.create_task(self.coalescer.submit(pieces))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    harness.release.set()
    for task in list(harness.tasks):
        task.cancel()
    if harness.tasks:
        await asyncio.wait(harness.tasks)


async def test_calls_within_window_share_request(harness: Harness) -> None:
    calls = [harness.submit(f"text {number}") for number in range(5)]
    await settle()
    assert harness.batches == []

    harness.clock.advance(0.005)
    await settle()
    harness.release.set()
    results = await asyncio.gather(*calls)

    assert harness.batches == [[f"text {number}" for number in range(5)]]
    assert results == [[f"vector of text {number}"] for number in range(5)]
    assert harness.coalescer.requests_sent == 1


async def test_full_group_is_sent_before_window(harness: Harness) -> None:
    calls = [harness.submit(f"text {number}") for number in range(8)]
    await settle()

    assert len(harness.batches) == 1
    assert len(harness.batches[0]) == 8
    harness.release.set()
    await asyncio.gather(*calls)


async def test_call_that_does_not_fit_opens_new_group(harness: Harness) -> None:
    first = harness.submit("a", "b", "c", "d", "e")
    second = harness.submit("f", "g", "h", "i")
    await settle()

    assert harness.batches == [["a", "b", "c", "d", "e"]]
    harness.clock.advance(0.005)
    await settle()
    assert harness.batches[1] == ["f", "g", "h", "i"]
    harness.release.set()
    assert await first == [f"vector of {text}" for text in "abcde"]
    assert await second == [f"vector of {text}" for text in "fghi"]


async def test_token_limit_splits_groups() -> None:
    harness = Harness(max_tokens=10)
    first = harness.submit("a", tokens=6)
    second = harness.submit("b", tokens=6)
    await settle()

    assert harness.batches == [["a"]]
    harness.clock.advance(0.005)
    await settle()
    harness.release.set()
    await asyncio.gather(first, second)
    assert harness.batches == [["a"], ["b"]]


async def test_cancelled_caller_leaves_unsent_group(harness: Harness) -> None:
    kept = harness.submit("kept")
    dropped = harness.submit("dropped")
    await settle()

    dropped.cancel()
    await settle()
    harness.clock.advance(0.005)
    await settle()
    harness.release.set()

    assert await kept == ["vector of kept"]
    assert harness.batches == [["kept"]]
    assert dropped.cancelled()


async def test_request_cancelled_when_all_callers_leave(harness: Harness) -> None:
    calls = [harness.submit(f"text {number}") for number in range(2)]
    await settle()
    harness.clock.advance(0.005)
    await settle()
    assert len(harness.batches) == 1
    request_tasks = set(harness.tasks)

    for call in calls:
        call.cancel()
    await settle()

    assert all(task.done() for task in request_tasks)
    assert harness.tasks == set()


async def test_request_failure_reaches_every_caller(harness: Harness) -> None:
    async def failing(batch: list[Piece]) -> list[str]:
        raise RuntimeError("request failed")

    harness.coalescer._run = failing
    calls = [harness.submit(f"text {number}") for number in range(3)]
    await settle()
    harness.clock.advance(0.005)

    for call in calls:
        with pytest.raises(RuntimeError, match="request failed"):
            await call


async def test_cancelled_request_gives_closed_error(harness: Harness) -> None:
    call = harness.submit("text")
    await settle()
    harness.clock.advance(0.005)
    await settle()

    for task in list(harness.tasks):
        task.cancel()

    with pytest.raises(ClosedError):
        await call
