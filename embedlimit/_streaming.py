"""`embed_stream`: read `(key, text)` items lazily, keep a bounded number of requests in flight,
and yield each item's result as soon as its request completes.

A feeder task reads the items in chunks, checks and counts them, packs them into batches and
starts one task per batch. At most `max_pending_requests` batches, holding at most
`max_pending_inputs` inputs, are started and not yet consumed, so a stream of millions of items
uses bounded memory even when the consumer is slow. The input bound matters most: a batch may hold
2,048 inputs, so a request bound alone lets tens of thousands of vectors wait for a slow consumer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from embedlimit._errors import EmbedLimitError, FatalError, InvalidInputError
from embedlimit._metrics import Metrics
from embedlimit._packing import BatchBuilder, OverlongPolicy, Piece, prepare_texts
from embedlimit._requests import Outcome
from embedlimit._results import EmbeddingResult
from embedlimit._vectors import Vector, VectorType, average_vectors

__all__ = ["StreamItems", "embed_items"]

logger = logging.getLogger(__name__)

K = TypeVar("K")

StreamItems = Iterable[tuple[K, str | None]] | AsyncIterable[tuple[K, str | None]]
"""`(key, text)` pairs; a None or otherwise invalid text yields a failed result for its key."""

CHUNK_SIZE = 256
"""Items read, checked and counted together; small enough to keep the event loop responsive."""


@dataclass(frozen=True)
class StreamConfig:
    """The settings a stream needs from its embedder."""

    max_inputs: int
    max_tokens: int
    max_tokens_per_input: int
    overlong: OverlongPolicy
    vector_type: VectorType
    max_pending_requests: int
    max_pending_inputs: int
    idle_flush: float
    token_cap: Callable[[], int] | None = None
    """The max tokens a request may carry now, read before each chunk. A token limit learned from
    the headers after the stream started then applies to the batches still to come."""


@dataclass
class _Item(Generic[K]):
    """An item whose pieces are still in flight."""

    key: K
    remaining: int
    vectors: list[Vector] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    error: EmbedLimitError | None = None


@dataclass(frozen=True)
class _Results:
    """Results to yield; those of a batch free its slot when consumed."""

    results: list[EmbeddingResult[Any]]
    batch_inputs: int | None
    """The input count of the batch these results came from; None for results without a batch."""


class _End:
    """The feeder's last message: every batch has been reported."""


_Message = _Results | BaseException | _End


class _Stream(Generic[K]):
    def __init__(
        self,
        config: StreamConfig,
        *,
        run: Callable[[list[Piece]], Awaitable[list[Outcome]]],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        closed_error: Callable[[], Exception],
        metrics: Metrics,
    ) -> None:
        self.config = config
        self._run = run
        self._spawn = spawn
        self._closed_error = closed_error
        self._metrics = metrics
        self._queue: asyncio.Queue[_Message] = asyncio.Queue()
        self._slots = asyncio.Semaphore(config.max_pending_requests)
        self._inputs = _InputBudget(config.max_pending_inputs)
        self._items: dict[int, _Item[K]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def results(self, items: StreamItems[K]) -> AsyncIterator[EmbeddingResult[K]]:
        feeder = self._track(self._feed(items))
        try:
            while True:
                message = await self._queue.get()
                if isinstance(message, _End):
                    return
                if isinstance(message, BaseException):
                    raise message
                if message.batch_inputs is not None:
                    self._slots.release()
                    await self._inputs.release(message.batch_inputs)
                for result in message.results:
                    yield result
        finally:
            feeder.cancel()
            await self._cancel_all()

    def _track(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._spawn(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _feed(self, items: StreamItems[K]) -> None:
        try:
            await self._read_and_launch(items)
            batches = [task for task in self._tasks if task is not asyncio.current_task()]
            if batches:
                await asyncio.wait(batches)
            self._queue.put_nowait(_End())
        except asyncio.CancelledError:
            self._queue.put_nowait(self._closed_error())
            raise
        except Exception as error:
            self._queue.put_nowait(error)

    async def _read_and_launch(self, items: StreamItems[K]) -> None:
        builder = BatchBuilder(self.config.max_inputs, self.config.max_tokens)
        first_item = 0
        async for chunk, source_idle in _read_chunks(items, CHUNK_SIZE, self.config.idle_flush):
            if self.config.token_cap is not None:
                builder.max_tokens = self.config.token_cap()
            for piece in self._prepare(chunk, first_item):
                full = builder.add(piece)
                if full:
                    await self._launch(full)
            if source_idle and len(builder):
                await self._launch(builder.flush())
            first_item += len(chunk)
        if len(builder):
            await self._launch(builder.flush())

    def _prepare(self, chunk: list[tuple[K, object]], first_item: int) -> list[Piece]:
        keys = [_key_of(item, first_item + position) for position, item in enumerate(chunk)]
        prepared = prepare_texts(
            [item[1] for item in chunk],
            max_tokens_per_input=self.config.max_tokens_per_input,
            overlong=self.config.overlong,
            first_item=first_item,
        )
        if prepared.rejected:
            self._metrics.record_skipped(len(prepared.rejected))
            rejected = [
                EmbeddingResult(
                    keys[item - first_item], None, InvalidInputError(f"text rejected: {reason}", input_index=item)
                )
                for item, reason in sorted(prepared.rejected.items())
            ]
            self._queue.put_nowait(_Results(rejected, batch_inputs=None))

        for piece in prepared.pieces:
            entry = self._items.get(piece.item)
            if entry is None:
                self._items[piece.item] = _Item(keys[piece.item - first_item], 1)
            else:
                entry.remaining += 1
        return prepared.pieces

    async def _launch(self, batch: list[Piece]) -> None:
        await self._slots.acquire()
        await self._inputs.acquire(len(batch))
        self._track(self._run_batch(batch))

    async def _run_batch(self, batch: list[Piece]) -> None:
        try:
            outcomes: list[Outcome | EmbedLimitError] = list(await self._run(batch))
        except EmbedLimitError as error:
            if isinstance(error, FatalError):
                self._queue.put_nowait(error)
                return
            # Retries are spent on this request: its items fail, and the stream goes on.
            logger.warning(
                "a request of %d inputs failed after its retries (%s, status %s); its items are reported as failed",
                len(batch),
                type(error).__name__,
                error.status,
            )
            outcomes = [error] * len(batch)
        except Exception as error:
            self._queue.put_nowait(error)
            return
        self._queue.put_nowait(_Results(self._complete(batch, outcomes), batch_inputs=len(batch)))

    def _complete(self, batch: list[Piece], outcomes: list[Outcome | EmbedLimitError]) -> list[EmbeddingResult[K]]:
        """Record each piece's outcome and return the results of the items now complete."""
        results: list[EmbeddingResult[K]] = []
        for piece, outcome in zip(batch, outcomes, strict=True):
            entry = self._items[piece.item]
            entry.remaining -= 1
            if isinstance(outcome, EmbedLimitError):
                entry.error = entry.error or outcome
            else:
                entry.vectors.append(outcome)
                entry.weights.append(piece.tokens)
            if entry.remaining == 0:
                del self._items[piece.item]
                results.append(self._result(entry))
        return results

    def _result(self, entry: _Item[K]) -> EmbeddingResult[K]:
        if entry.error is not None:
            return EmbeddingResult(entry.key, None, entry.error)
        if len(entry.vectors) == 1:
            return EmbeddingResult(entry.key, entry.vectors[0])
        vector = average_vectors(entry.vectors, entry.weights, self.config.vector_type)
        return EmbeddingResult(entry.key, vector)


class _InputBudget:
    """Counts the inputs of the batches started and not yet consumed, and holds back new ones.

    A batch larger than the whole budget still starts when nothing else is pending, so an
    oversized batch waits its turn instead of blocking the stream for ever.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._used = 0
        self._changed = asyncio.Condition()

    async def acquire(self, amount: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._used == 0 or self._used + amount <= self._capacity)
            self._used += amount

    async def release(self, amount: int) -> None:
        async with self._changed:
            self._used -= amount
            self._changed.notify_all()


def _key_of(item: object, position: int) -> Any:
    if not isinstance(item, tuple) or len(item) != 2:
        raise TypeError(
            f"stream item {position} is {type(item).__name__} {item!r:.60}; expected a (key, text) tuple"
        )
    return item[0]


async def _read_chunks(
    items: StreamItems[K], size: int, idle_flush: float
) -> AsyncIterator[tuple[list[tuple[K, object]], bool]]:
    """Yield chunks of up to `size` items, each with whether the source then made the reader wait.

    For an async source, a chunk is cut short when the next item takes longer than `idle_flush`
    seconds, so a slow trickle of items is still sent promptly.

    NOTE: `idle_flush` is measured on the event loop's clock, not on the embedder's injected
    clock, so a ScaledClock or FakeClock does not speed it up.
    """
    if isinstance(items, AsyncIterable):
        async for chunk_and_idle in _read_async_chunks(items.__aiter__(), size, idle_flush):
            yield chunk_and_idle
        return
    iterator = iter(items)
    while True:
        chunk: list[tuple[K, object]] = list(itertools.islice(iterator, size))
        if not chunk:
            return
        yield chunk, False
        await asyncio.sleep(0)


async def _read_async_chunks(
    iterator: AsyncIterator[tuple[K, str | None]], size: int, idle_flush: float
) -> AsyncIterator[tuple[list[tuple[K, object]], bool]]:
    chunk: list[tuple[K, object]] = []
    upcoming: asyncio.Future[tuple[K, str | None] | _End] | None = None
    try:
        while True:
            if upcoming is None:
                upcoming = asyncio.ensure_future(_next(iterator))
            if chunk and not upcoming.done():
                done, _ = await asyncio.wait({upcoming}, timeout=idle_flush)
                if not done:
                    yield chunk, True
                    chunk = []
                    continue
            item = await upcoming
            if isinstance(item, _End):
                break
            upcoming = None
            chunk.append(item)
            if len(chunk) >= size:
                yield chunk, False
                chunk = []
        if chunk:
            yield chunk, False
    finally:
        if upcoming is not None and not upcoming.done():
            upcoming.cancel()


async def _next(iterator: AsyncIterator[tuple[K, str | None]]) -> tuple[K, str | None] | _End:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return _End()


def embed_items(
    items: StreamItems[K],
    config: StreamConfig,
    *,
    run: Callable[[list[Piece]], Awaitable[list[Outcome]]],
    spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    closed_error: Callable[[], Exception],
    metrics: Metrics,
) -> AsyncIterator[EmbeddingResult[K]]:
    """Return the async iterator of results for `items`; see `Embedder.embed_stream`."""
    stream: _Stream[K] = _Stream(config, run=run, spawn=spawn, closed_error=closed_error, metrics=metrics)
    return stream.results(items)
