"""The OpenAI Cookbook's parallel-processor algorithm, rewritten from its published description.

The Cookbook's `api_request_parallel_processor.py` keeps two capacities, requests and tokens,
that start full at the configured per-minute limits and refill continuously at limit / 60 per
second. A request is dispatched when both capacities cover it (one request and its input tokens,
counted with tiktoken). After a rate-limit error, no request is dispatched until 15 seconds have
passed since that error. A failed request goes back into a retry queue until it has been tried
`max_attempts` times (5 by default). This module implements that behaviour for embeddings
requests with aiohttp; it shares no code with the Cookbook's script.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

import aiohttp
import orjson

from embedlimit._tokens import count_tokens_batch

PAUSE_AFTER_RATE_LIMIT = 15.0
LOOP_SLEEP = 0.001
DEFAULT_MAX_ATTEMPTS = 5


@dataclass
class Job:
    """One embeddings request: the positions of its inputs, their texts and their token count."""

    positions: list[int]
    texts: list[str]
    tokens: int
    attempts_left: int


@dataclass
class Capacity:
    """A continuously refilled capacity of `limit` units per minute, starting full."""

    limit: float
    level: float = 0.0
    updated_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.level = self.limit

    def refill(self, now: float) -> None:
        self.level = min(self.limit, self.level + (now - self.updated_at) * self.limit / 60.0)
        self.updated_at = now


class CookbookProcessor:
    """Embed jobs under client-side request and token capacities, pausing after rate-limit errors."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, key: str, model: str, rpm: float, tpm: float
    ) -> None:
        self.session = session
        self.url = url
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.model = model
        self.requests = Capacity(rpm)
        self.tokens = Capacity(tpm)
        self.last_rate_limit_error = -PAUSE_AFTER_RATE_LIMIT
        self.retry_queue: deque[Job] = deque()
        self.in_flight = 0
        self.vectors: dict[int, list[float]] = {}

    async def run(self, jobs: list[Job]) -> None:
        """Dispatch every job and wait until each one has succeeded or used up its attempts."""
        pending = deque(jobs)
        tasks: set[asyncio.Task[None]] = set()
        next_job: Job | None = None
        while pending or self.retry_queue or self.in_flight or next_job is not None:
            if next_job is None:
                next_job = self._take_next(pending)
            if next_job is not None and self._dispatchable(next_job):
                task = asyncio.create_task(self._send(next_job))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                next_job = None
            await asyncio.sleep(LOOP_SLEEP)

    def _take_next(self, pending: deque[Job]) -> Job | None:
        if self.retry_queue:
            return self.retry_queue.popleft()
        return pending.popleft() if pending else None

    def _dispatchable(self, job: Job) -> bool:
        """Spend the capacities for `job` when both cover it and no rate-limit pause is running."""
        now = time.monotonic()
        if now - self.last_rate_limit_error < PAUSE_AFTER_RATE_LIMIT:
            return False
        self.requests.refill(now)
        self.tokens.refill(now)
        if self.requests.level < 1 or self.tokens.level < job.tokens:
            return False
        self.requests.level -= 1
        self.tokens.level -= job.tokens
        job.attempts_left -= 1
        return True

    async def _send(self, job: Job) -> None:
        self.in_flight += 1
        try:
            body = orjson.dumps({"model": self.model, "input": job.texts, "encoding_format": "float"})
            async with self.session.post(self.url, data=body, headers=self.headers) as response:
                payload = await response.read()
                status = response.status
            self._settle(job, status, payload)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            self._requeue(job)
        finally:
            self.in_flight -= 1

    def _settle(self, job: Job, status: int, payload: bytes) -> None:
        if status == 200:
            data = orjson.loads(payload)["data"]
            for entry in data:
                self.vectors[job.positions[entry["index"]]] = entry["embedding"]
            return
        if status == 429 and b"rate_limit_exceeded" in payload:
            self.last_rate_limit_error = time.monotonic()
        self._requeue(job)

    def _requeue(self, job: Job) -> None:
        if job.attempts_left > 0:
            self.retry_queue.append(job)


def make_jobs(texts: list[str], inputs_per_request: int, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> list[Job]:
    """Split `texts` into jobs of `inputs_per_request` inputs, each with its tiktoken count."""
    counts = count_tokens_batch(texts)
    jobs = []
    for start in range(0, len(texts), inputs_per_request):
        positions = list(range(start, min(start + inputs_per_request, len(texts))))
        tokens = sum(counts[position] for position in positions)
        jobs.append(Job(positions, [texts[position] for position in positions], tokens, max_attempts))
    return jobs
