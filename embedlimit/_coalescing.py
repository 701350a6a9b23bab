"""Micro-batching: small `embed()` calls that arrive within a short window share one request.

A web backend that embeds one text per HTTP request would otherwise send one embeddings
request per text and hit the requests-per-minute limit long before the tokens-per-minute one.
The first call to arrive opens a group and starts the window. Calls that arrive before the window
ends join the group. The group is sent when the window ends, or earlier when it is full.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from embedlimit._clock import Clock
from embedlimit._packing import Piece

__all__ = ["Coalescer"]

Outcome = TypeVar("Outcome")


class _Entry(Generic[Outcome]):
    """One caller's pieces and the future that receives its outcomes, one per piece."""

    __slots__ = ("future", "group", "pieces")

    def __init__(self, pieces: list[Piece], future: asyncio.Future[list[Outcome]], group: _Group[Outcome]) -> None:
        self.pieces = pieces
        self.future = future
        self.group = group


class _Group(Generic[Outcome]):
    """Entries that will share one request, and the task that runs it once sent."""

    __slots__ = ("entries", "inputs", "task", "tokens")

    def __init__(self) -> None:
        self.entries: list[_Entry[Outcome]] = []
        self.inputs = 0
        self.tokens = 0
        self.task: asyncio.Task[None] | None = None


class Coalescer(Generic[Outcome]):
    """Group the pieces of concurrent calls into shared batches and hand each call its outcomes.

    `run` embeds one batch and returns one outcome per piece, in order. `spawn` starts a task
    that the owner tracks and cancels on close; the callers of a request cancelled that way get
    `closed_error()`. A cancelled caller leaves its group, and a request whose callers were all
    cancelled is cancelled too.
    """

    def __init__(
        self,
        *,
        window: float,
        max_inputs: int,
        max_tokens: int,
        clock: Clock,
        run: Callable[[list[Piece]], Awaitable[list[Outcome]]],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        closed_error: Callable[[], Exception],
    ) -> None:
        self.window = window
        self.max_inputs = max_inputs
        self.max_tokens = max_tokens
        self.clock = clock
        self._run = run
        self._spawn = spawn
        self._closed_error = closed_error
        self._open: _Group[Outcome] | None = None
        self._timer: asyncio.Task[None] | None = None
        self.requests_sent = 0

    def fits(self, pieces: list[Piece]) -> bool:
        """Return whether `pieces` fit into one request by themselves."""
        return len(pieces) <= self.max_inputs and sum(piece.tokens for piece in pieces) <= self.max_tokens

    async def submit(self, pieces: list[Piece]) -> list[Outcome]:
        """Add `pieces` to the open group and wait for their outcomes."""
        tokens = sum(piece.tokens for piece in pieces)
        group = self._open
        if group is not None and (
            group.inputs + len(pieces) > self.max_inputs or group.tokens + tokens > self.max_tokens
        ):
            self._send_open_group()
        group = self._open_group()

        entry: _Entry[Outcome] = _Entry(pieces, asyncio.get_running_loop().create_future(), group)
        group.entries.append(entry)
        group.inputs += len(pieces)
        group.tokens += tokens
        if group.inputs >= self.max_inputs or group.tokens >= self.max_tokens:
            self._send_open_group()

        try:
            return await entry.future
        except asyncio.CancelledError:
            self._leave(entry)
            raise

    def _open_group(self) -> _Group[Outcome]:
        if self._open is None:
            self._open = _Group()
            self._timer = self._spawn(self._send_after_window())
        return self._open

    async def _send_after_window(self) -> None:
        await self.clock.sleep(self.window)
        self._timer = None
        self._send_open_group()

    def _send_open_group(self) -> None:
        group = self._open
        self._open = None
        timer = self._timer
        self._timer = None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        if group is None or not group.entries:
            return
        self.requests_sent += 1
        group.task = self._spawn(self._run_group(group))

    async def _run_group(self, group: _Group[Outcome]) -> None:
        batch = [piece for entry in group.entries for piece in entry.pieces]
        try:
            outcomes = await self._run(batch)
        except asyncio.CancelledError:
            _fail_all(group, self._closed_error())
            raise
        except Exception as error:
            _fail_all(group, error)
            return

        start = 0
        for entry in group.entries:
            end = start + len(entry.pieces)
            if not entry.future.done():
                entry.future.set_result(outcomes[start:end])
            start = end

    def _leave(self, entry: _Entry[Outcome]) -> None:
        """Remove a cancelled caller: from its group if not sent yet, or cancel the request it alone awaited."""
        group = entry.group
        if group.task is None:
            group.entries.remove(entry)
            group.inputs -= len(entry.pieces)
            group.tokens -= sum(piece.tokens for piece in entry.pieces)
            return
        if all(other.future.done() for other in group.entries):
            group.task.cancel()

    async def aclose(self) -> None:
        """Cancel the window timer; the embedder cancels the requests already sent."""
        timer = self._timer
        self._timer = None
        if timer is not None:
            timer.cancel()


def _fail_all(group: _Group[Any], error: Exception) -> None:
    for entry in group.entries:
        if not entry.future.done():
            entry.future.set_exception(error)
