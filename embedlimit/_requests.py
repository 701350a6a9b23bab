"""Run one batch to completion: choose a key, wait for the limiter and a concurrency slot, send, check,
retry, and isolate the inputs that the server rejects.

Outcomes come back one per input, in order: a vector, or the `InputError` that rejected that
input alone. An error that concerns the whole request once retries are spent (or a
`FatalError`, such as every key being retired) is raised instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from embedlimit._client import EmbeddingsClient, RawResponse, parse_response
from embedlimit._clock import Clock
from embedlimit._concurrency import AimdController, ConcurrencyGate
from embedlimit._errors import (
    AuthenticationError,
    EmbedLimitError,
    InputError,
    InvalidInputError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TransportError,
)
from embedlimit._headers import parse_rate_limit_headers
from embedlimit._keys import ApiKey, KeyPool
from embedlimit._limiter import Ticket
from embedlimit._metrics import Metrics, RequestRecord
from embedlimit._packing import Piece
from embedlimit._retry import RetryPolicy, call_with_retries
from embedlimit._vectors import Vector, VectorType

__all__ = ["Outcome", "RequestRunner"]

logger = logging.getLogger(__name__)

Outcome = Vector | InputError
"""The result for one input: its vector, or the error that rejected it alone."""

_CONGESTION = (RateLimitError, ServerError, TransportError, RequestTimeoutError)


class RequestRunner:
    """Sends batches through a key pool, a concurrency gate and a retry policy, recording metrics."""

    def __init__(
        self,
        *,
        client: EmbeddingsClient,
        keys: KeyPool,
        controller: AimdController,
        gate: ConcurrencyGate,
        metrics: Metrics,
        retry: RetryPolicy,
        clock: Clock,
        vector_type: VectorType,
        dimension: int | None,
        max_isolation_requests: int,
    ) -> None:
        self.client = client
        self.keys = keys
        self.controller = controller
        self.gate = gate
        self.metrics = metrics
        self.retry = retry
        self.clock = clock
        self.vector_type = vector_type
        self.dimension = dimension
        self.max_isolation_requests = max_isolation_requests

    async def run(self, pieces: Sequence[Piece]) -> list[Outcome]:
        """Embed `pieces` and return one outcome per piece, in order."""
        budget = _IsolationBudget(self.max_isolation_requests)
        outcomes = await self._run_isolating(list(pieces), budget)
        rejected = [outcome for outcome in outcomes if isinstance(outcome, InputError)]
        if rejected:
            logger.info(
                "%d of %d inputs of a batch were rejected (first: %s, status %s, request id %s)",
                len(rejected),
                len(outcomes),
                type(rejected[0]).__name__,
                rejected[0].status,
                rejected[0].request_id,
            )
        return outcomes

    async def _run_isolating(self, pieces: list[Piece], budget: _IsolationBudget) -> list[Outcome]:
        try:
            vectors: list[Outcome] = list(await self._run_with_retries(pieces))
        except InputError as error:
            if len(pieces) == 1:
                return [error]
            return await self._isolate(pieces, error, budget)
        return vectors

    async def _isolate(self, pieces: list[Piece], error: InputError, budget: _IsolationBudget) -> list[Outcome]:
        """Split a rejected batch and send the parts, until each rejected input is alone.

        An error that names an input index isolates that input at once; otherwise the batch is
        halved. The budget bounds the extra requests, so a rejection that concerns the whole
        request (such as an unsupported parameter) cannot turn into thousands of them. Inputs
        left when it runs out fail with the batch's error.
        """
        outcomes: list[Outcome | None] = [None] * len(pieces)
        for positions in _split_positions(len(pieces), error):
            if budget.take():
                part = await self._run_isolating([pieces[position] for position in positions], budget)
            else:
                part = [error] * len(positions)
            for position, outcome in zip(positions, part, strict=True):
                outcomes[position] = outcome
        return outcomes  # type: ignore[return-value]

    async def _run_with_retries(self, pieces: list[Piece]) -> list[Vector]:
        async def attempt_once(attempt: int) -> list[Vector]:
            return await self._attempt_on_any_key(pieces, attempt)

        return await call_with_retries(attempt_once, self.retry, self.clock, on_retry=self._on_retry)

    def _on_retry(self, attempt: int, error: BaseException, delay: float) -> None:
        self.metrics.record_retry()

    async def _attempt_on_any_key(self, pieces: list[Piece], attempt: int) -> list[Vector]:
        """Send one attempt, moving to another key when the chosen one is retired."""
        while True:
            key = self.keys.choose()
            try:
                return await self._attempt(key, pieces, attempt)
            except (AuthenticationError, QuotaExceededError) as error:
                self.keys.retire(key, error)

    async def _attempt(self, key: ApiKey, pieces: list[Piece], attempt: int) -> list[Vector]:
        tokens = sum(piece.tokens for piece in pieces)
        key.pending += 1
        try:
            ticket = await key.limiter.acquire(tokens)
            return await self._exchange(key, ticket, pieces, tokens, attempt)
        finally:
            key.pending -= 1

    async def _exchange(
        self, key: ApiKey, ticket: Ticket, pieces: list[Piece], tokens: int, attempt: int
    ) -> list[Vector]:
        """Send one request under `ticket`, settle the ticket once, and return the vectors."""
        started = self.clock.now()
        try:
            async with self.gate.slot():
                self.metrics.start_request()
                started = self.clock.now()
                response = await self.client.post([piece.text for piece in pieces], key.secret, attempt=attempt)
        except EmbedLimitError as error:
            key.limiter.settle(ticket)
            self._record(key, pieces, tokens, attempt, None, started, error)
            raise
        except BaseException:
            key.limiter.settle(ticket)
            raise
        return self._accept(key, ticket, pieces, tokens, attempt, response, started)

    def _accept(
        self,
        key: ApiKey,
        ticket: Ticket,
        pieces: list[Piece],
        tokens: int,
        attempt: int,
        response: RawResponse,
        started: float,
    ) -> list[Vector]:
        # The body is parsed for a retry hint only on errors: a 2xx body is megabytes of vectors.
        hint_body = None if response.status < 300 else response.body
        info = parse_rate_limit_headers(response.headers, hint_body)
        try:
            embeddings = parse_response(
                response,
                expected_count=len(pieces),
                dimension=self.dimension,
                vector_type=self.vector_type,
                attempt=attempt,
                secrets=self.keys.secrets,
            )
        except EmbedLimitError as error:
            limit_type = error.limit_type if isinstance(error, RateLimitError) else None
            key.limiter.settle(ticket, info, None, response.status, limit_type=limit_type)
            self._record(key, pieces, tokens, attempt, response, started, error)
            raise

        key.limiter.settle(ticket, info, embeddings.total_tokens, response.status)
        if self.dimension is None and embeddings.vectors:
            self.dimension = len(embeddings.vectors[0])
        used = embeddings.total_tokens if embeddings.total_tokens is not None else tokens
        self._record(key, pieces, used, attempt, response, started, None)
        return embeddings.vectors

    def _record(
        self,
        key: ApiKey,
        pieces: list[Piece],
        tokens: int,
        attempt: int,
        response: RawResponse | None,
        started: float,
        error: EmbedLimitError | None,
    ) -> None:
        latency = max(0.0, self.clock.now() - started)
        status = response.status if response is not None else None
        if error is None:
            self.controller.record_success(latency, tokens)
        elif isinstance(error, _CONGESTION):
            self.controller.record_congestion()
        self.gate.wake()

        record = RequestRecord(
            key=key.fingerprint,
            attempt=attempt,
            inputs=len(pieces),
            tokens=tokens,
            status=status,
            latency=latency,
            error=type(error).__name__ if error is not None else None,
        )
        self.metrics.record_request(record, error)
        logger.debug(
            "embeddings request: status %s, %d inputs, %d tokens, %.3f s, attempt %d, key %s, request id %s",
            status,
            len(pieces),
            tokens,
            latency,
            attempt,
            key.fingerprint,
            response.request_id if response is not None else None,
        )


class _IsolationBudget:
    """The extra requests that isolating rejected inputs may still send for one batch."""

    def __init__(self, requests: int) -> None:
        self.initial = requests
        self.remaining = requests

    def take(self) -> bool:
        """Use one request, or return False (with one WARNING) when none is left."""
        if self.remaining > 0:
            self.remaining -= 1
            return True
        if self.remaining == 0:
            self.remaining = -1
            logger.warning(
                "stopped isolating rejected inputs after %d extra requests; the inputs left fail with the "
                "request's error (raise max_isolation_requests to isolate further)",
                self.initial,
            )
        return False


def _split_positions(count: int, error: InputError) -> list[list[int]]:
    """Return the groups of positions to send apart: the named input alone, or two halves."""
    index = error.input_index if isinstance(error, InvalidInputError) else None
    if index is not None and 0 <= index < count:
        return [[index], [position for position in range(count) if position != index]]
    middle = count // 2
    return [list(range(middle)), list(range(middle, count))]
