"""Helpers shared by the simulator tests: a manual clock and a small HTTP client."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

MODEL = "text-embedding-3-small"
KEY = "sk-test-1"


class ManualClock:
    """A clock that moves only when a test calls `advance`; `sleep` waits for that."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._moved = asyncio.Condition()

    def now(self) -> float:
        return self._now

    async def sleep(self, delay: float) -> None:
        deadline = self._now + max(0.0, delay)
        async with self._moved:
            await self._moved.wait_for(lambda: self._now >= deadline)

    async def advance(self, delay: float) -> None:
        """Move time forward by `delay` seconds and wake the sleepers whose deadline passed."""
        self._now += delay
        async with self._moved:
            self._moved.notify_all()
        await asyncio.sleep(0)


@dataclass
class Reply:
    """One HTTP response: status, headers and the body (parsed JSON, or text when not JSON)."""

    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.body["error"]
        return error


async def post_embeddings(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, Any] | bytes,
    *,
    key: str | None = KEY,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """POST to `url` (a full embeddings URL) with a Bearer key and return the reply."""
    request_headers = {"Content-Type": "application/json"}
    if key is not None:
        request_headers["Authorization"] = f"Bearer {key}"
    request_headers.update(headers or {})
    data = io.BytesIO(body if isinstance(body, bytes) else orjson.dumps(body))
    async with session.post(url, data=data, headers=request_headers) as response:
        raw = await response.read()
        try:
            parsed: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = raw.decode("utf-8", "replace")
        return Reply(response.status, CIMultiDict(response.headers), parsed)


def tokens(count: int) -> list[int]:
    """A token array of exactly `count` tokens (token 1 decodes to a double quote)."""
    return [1] * count
