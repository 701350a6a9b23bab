"""`Embedder`: embed texts through the OpenAI embeddings API at the pace its rate limits allow."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from embedlimit._client import EmbeddingsClient, EncodingFormat, create_session
from embedlimit._clock import Clock, LoopClock
from embedlimit._coalescing import Coalescer
from embedlimit._concurrency import AimdController, ConcurrencyGate
from embedlimit._errors import ConfigurationError, InputError, InvalidInputError
from embedlimit._keys import KeyPool
from embedlimit._limiter import LimiterStatistics, RateLimiter
from embedlimit._metrics import Metrics, MetricsSnapshot, RequestRecord
from embedlimit._packing import (
    MAX_INPUTS_PER_REQUEST,
    MAX_TOKENS_PER_INPUT,
    MAX_TOKENS_PER_REQUEST,
    OverlongPolicy,
    Piece,
    Prepared,
    pack_pieces,
    prepare_texts,
)
from embedlimit._requests import Outcome, RequestRunner
from embedlimit._results import EmbedderClosedError, EmbeddingResult
from embedlimit._retry import RetryPolicy
from embedlimit._settings import InvalidPolicy, build_settings, check_choice
from embedlimit._streaming import StreamConfig, StreamItems, embed_items
from embedlimit._vectors import Vector, VectorType, average_vectors

__all__ = ["Embedder"]

logger = logging.getLogger(__name__)

K = TypeVar("K")

THREAD_THRESHOLD = 4096
"""Texts in one `embed()` call above which checking and counting run in a worker thread."""


REQUEST_SHARE_OF_TOKEN_LIMIT = 0.05
"""The share of the per-minute token limit that one request may carry."""


class Embedder:
    """Embeds texts through the OpenAI embeddings API, or an OpenAI-compatible or Azure OpenAI one.

    Use it as an async context manager, or call `aclose()` when done::

        async with Embedder(model="text-embedding-3-small") as embedder:
            vectors = await embedder.embed(["first text", "second text"])

    Vectors are float32 `numpy.ndarray`s of shape `(dimension,)` when numpy is installed (or with
    `vector_type="numpy"`), else `array.array("f")` (or with `vector_type="array"`). Vectors
    decoded from one response are views into one shared buffer.

    Connection: `api_key` is one key, a list of keys, or None to read `OPENAI_API_KEY` (keys
    separated by commas). `base_url` defaults to `OPENAI_BASE_URL`, else OpenAI's URL. For Azure
    OpenAI, set `azure_endpoint` (such as `https://NAME.openai.azure.com`), `azure_deployment`
    (default: `model`) and `api_version` (default: `OPENAI_API_VERSION`, else "2024-10-21"). The
    key then defaults to `AZURE_OPENAI_API_KEY`, then `OPENAI_API_KEY`, and is sent in `api-key`.

    Pacing: each key has its own `RateLimiter`, which starts from `requests_per_minute` and
    `tokens_per_minute` when given and follows the server's rate-limit headers. Requests go to
    the key with the most headroom. A key answered with 401, 403 or `insufficient_quota` is
    retired and the others carry on, and when none is left every call raises that FatalError.
    At most between `min_concurrency` and `max_concurrency` requests are in flight, adapted to
    429s, timeouts, server errors and latency. `retry` is the `RetryPolicy` of each request.

    Inputs: a request carries at most `max_inputs_per_request` inputs and
    `max_tokens_per_request` tokens. A text over `max_tokens_per_input` tokens is cut to that many
    (`overlong="truncate"`), embedded in pieces whose vectors are averaged weighted by tokens and
    scaled to unit length (`overlong="split"`), or rejected (`overlong="error"`). Empty or
    whitespace-only texts, None, non-strings and texts with lone surrogates are rejected before
    sending. A text the server rejects (HTTP 400) is isolated by splitting its request, so its
    neighbours still get vectors. `on_invalid` sets what `embed()` does with a rejected text.

    Micro-batching: `embed()` calls whose texts fit into one request wait up to
    `coalesce_window` seconds and share requests with concurrent calls; 0 turns this off.

    Timeouts: `connect_timeout` bounds opening a connection and `read_timeout` each wait for
    response data, in seconds. Metrics: `metrics()` returns a snapshot, `on_request` is called
    with a `RequestRecord` after each request, and `prices` (dollars per million tokens, by
    model) overrides the table behind the estimated cost.
    """

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        api_key: str | Sequence[str] | None = None,
        base_url: str | None = None,
        dimensions: int | None = None,
        *,
        azure_endpoint: str | None = None,
        azure_deployment: str | None = None,
        api_version: str | None = None,
        clock: Clock | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        retry: RetryPolicy | None = None,
        encoding_format: EncodingFormat = "base64",
        vector_type: VectorType | None = None,
        max_inputs_per_request: int = MAX_INPUTS_PER_REQUEST,
        max_tokens_per_request: int = MAX_TOKENS_PER_REQUEST,
        max_tokens_per_input: int = MAX_TOKENS_PER_INPUT,
        overlong: OverlongPolicy = "truncate",
        on_invalid: InvalidPolicy = "raise",
        min_concurrency: int = 1,
        max_concurrency: int = 64,
        coalesce_window: float = 0.005,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_pending_requests: int | None = None,
        max_pending_inputs: int = 8192,
        max_isolation_requests: int = 64,
        prices: Mapping[str, float] | None = None,
        on_request: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        self.settings = build_settings(
            model=model,
            api_key=api_key,
            base_url=base_url,
            dimensions=dimensions,
            azure_endpoint=azure_endpoint,
            azure_deployment=azure_deployment,
            api_version=api_version,
            encoding_format=encoding_format,
            vector_type=vector_type,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            max_inputs_per_request=max_inputs_per_request,
            max_tokens_per_request=max_tokens_per_request,
            max_tokens_per_input=max_tokens_per_input,
            overlong=overlong,
            on_invalid=on_invalid,
            min_concurrency=min_concurrency,
            max_concurrency=max_concurrency,
            coalesce_window=coalesce_window,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pending_requests=max_pending_requests,
            max_pending_inputs=max_pending_inputs,
            max_isolation_requests=max_isolation_requests,
            prices=prices,
            on_request=on_request,
        )
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigurationError(f"clock must provide now() and sleep(), such as LoopClock(); got {clock!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {retry!r}")
        self.clock: Clock = clock if clock is not None else LoopClock()
        self.retry = retry if retry is not None else RetryPolicy()

        self._keys = KeyPool(self.settings.api_keys, self._make_limiter)
        self._controller = AimdController(self.settings.min_concurrency, self.settings.max_concurrency)
        self._gate = ConcurrencyGate(self._controller)
        self._metrics = Metrics(
            self.clock,
            price_per_million_tokens=self.settings.price_per_million_tokens,
            on_request=self.settings.on_request,
        )
        # NOTE: fixed here. A lower token limit learned later from the headers makes the limiter
        # raise CapacityError for larger batches, which are then halved until they fit.
        self._max_batch_tokens = min(self.settings.max_tokens_per_request, tokens_per_minute or math.inf)
        self._session: aiohttp.ClientSession | None = None
        self._runner: RequestRunner | None = None
        self._coalescer: Coalescer[Outcome] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def _make_limiter(self) -> RateLimiter:
        return RateLimiter(self.settings.requests_per_minute, self.settings.tokens_per_minute, clock=self.clock)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<Embedder model={self.settings.model!r} url={self.settings.endpoint.url!r} "
            f"keys={len(self.settings.api_keys)} {state}>"
        )

    # Lifecycle.

    async def __aenter__(self) -> Embedder:
        self._start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    def _start(self) -> RequestRunner:
        """Create the session and the runner on first use; they need a running event loop."""
        if self._closed:
            raise EmbedderClosedError("the embedder is closed; create a new Embedder to embed more texts")
        if self._runner is not None:
            return self._runner

        settings = self.settings
        self._session = create_session(
            pool_size=settings.max_concurrency,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
        )
        self._runner = RequestRunner(
            client=EmbeddingsClient(self._session, settings.endpoint),
            keys=self._keys,
            controller=self._controller,
            gate=self._gate,
            metrics=self._metrics,
            retry=self.retry,
            clock=self.clock,
            vector_type=settings.vector_type,
            dimension=settings.dimension,
            max_isolation_requests=settings.max_isolation_requests,
        )
        if settings.coalesce_window > 0:
            self._coalescer = Coalescer(
                window=settings.coalesce_window,
                max_inputs=settings.max_inputs_per_request,
                max_tokens=int(self._max_batch_tokens),
                clock=self.clock,
                run=self._runner.run,
                spawn=self._spawn,
                closed_error=self._closed_error,
            )
        logger.debug("embedder started: %r", self)
        return self._runner

    async def aclose(self) -> None:
        """Cancel every request in flight, fail the waiting calls with EmbedderClosedError, and close the session."""
        if self._closed:
            return
        self._closed = True
        if self._coalescer is not None:
            await self._coalescer.aclose()

        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._session is not None:
            await self._session.close()
        logger.debug("embedder closed after %d requests", self._metrics.snapshot().requests)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _closed_error(self) -> EmbedderClosedError:
        return EmbedderClosedError("the embedder was closed while this call was waiting for its vectors")

    # Embedding.

    async def embed(self, texts: Sequence[str], *, on_invalid: InvalidPolicy | None = None) -> list[Vector | None]:
        """Embed `texts` and return one vector per text, in input order.

        With `on_invalid="raise"` (the embedder's default unless set otherwise), a text rejected
        before sending raises InvalidInputError before any request is sent. A text rejected by the
        server raises it once the other requests finish. Its `input_index` is the text's position.
        With `on_invalid="skip"`, such a text gets None in its place. A request that still fails
        after its retries raises its error, and every key retired raises the FatalError.
        """
        policy = self.settings.on_invalid if on_invalid is None else on_invalid
        check_choice("on_invalid", policy, ("raise", "skip"))
        items = _as_text_list(texts)
        self._start()

        prepared = await self._prepare(items)
        if prepared.rejected:
            if policy == "raise":
                raise _rejected_texts_error(prepared.rejected, len(items))
            self._metrics.record_skipped(len(prepared.rejected))
        outcomes = await self._embed_pieces(prepared.pieces)
        return self._assemble(len(items), prepared.pieces, outcomes, policy)

    async def _prepare(self, texts: list[object]) -> Prepared:
        settings = self.settings
        arguments = {"max_tokens_per_input": settings.max_tokens_per_input, "overlong": settings.overlong}
        if len(texts) <= THREAD_THRESHOLD:
            return prepare_texts(texts, **arguments)  # type: ignore[arg-type]
        # Counting tokens takes about 2 µs per short text, so a large call would stall the event loop.
        return await asyncio.to_thread(prepare_texts, texts, **arguments)  # type: ignore[arg-type]

    async def _embed_pieces(self, pieces: list[Piece]) -> list[Outcome]:
        if not pieces:
            return []
        runner = self._start()
        if self._coalescer is not None and self._coalescer.fits(pieces):
            return await self._coalescer.submit(pieces)

        batches = pack_pieces(pieces, self.settings.max_inputs_per_request, self._batch_tokens())
        tasks = [self._spawn(runner.run(batch)) for batch in batches]
        results = await self._wait_all(tasks)
        return [outcome for result in results for outcome in result]

    async def _wait_all(self, tasks: list[asyncio.Task[list[Outcome]]]) -> list[list[Outcome]]:
        """Wait for every task; on the first failure or on cancellation, cancel the rest and wait for them."""
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            await _cancel_and_wait(tasks)
            raise

        failed = next((task for task in tasks if task.done() and (task.cancelled() or task.exception())), None)
        if failed is None:
            return [task.result() for task in tasks]
        await _cancel_and_wait(tasks)
        if failed.cancelled():
            raise self._closed_error()
        error = failed.exception()
        assert error is not None
        raise error

    def _assemble(
        self, count: int, pieces: list[Piece], outcomes: list[Outcome], policy: InvalidPolicy
    ) -> list[Vector | None]:
        """Place each item's vector, averaging split items, and apply `policy` to rejected ones."""
        vectors: list[Vector | None] = [None] * count
        start = 0
        while start < len(pieces):
            item = pieces[start].item
            end = start + 1
            while end < len(pieces) and pieces[end].item == item:
                end += 1
            vectors[item] = self._item_vector(item, pieces[start:end], outcomes[start:end], policy)
            start = end
        return vectors

    def _item_vector(
        self, item: int, pieces: list[Piece], outcomes: list[Outcome], policy: InvalidPolicy
    ) -> Vector | None:
        error = next((outcome for outcome in outcomes if isinstance(outcome, InputError)), None)
        if error is not None:
            if policy == "raise":
                raise InvalidInputError(
                    f"text {item} was rejected by the server: {error.message} Pass on_invalid='skip' "
                    "to get None in its place.",
                    input_index=item,
                    status=error.status,
                    code=error.code,
                    request_id=error.request_id,
                )
            self._metrics.record_skipped()
            return None
        if len(outcomes) == 1:
            return outcomes[0]  # type: ignore[return-value]
        weights = [float(piece.tokens) for piece in pieces]
        return average_vectors(outcomes, weights, self.settings.vector_type)  # type: ignore[arg-type]

    def embed_stream(self, items: StreamItems[K]) -> AsyncIterator[EmbeddingResult[K]]:
        """Embed `(key, text)` items from a sync or async iterable, yielding results as requests complete.

        Every item yields exactly one `EmbeddingResult`: with its vector, or with the error that
        made it fail (a rejected text, or a request that failed after all retries), so the caller
        can store the failed keys. Results come in completion order, not input order. A
        FatalError, such as every key being retired, ends the stream by raising.

        Items are read as requests free up, with at most `max_pending_requests` requests, holding
        at most `max_pending_inputs` inputs, started and not yet consumed. Leaving the loop early
        cancels the requests in flight once the iterator is closed: use `contextlib.aclosing` to
        close it at once.
        """
        self._start()
        config = StreamConfig(
            max_inputs=self.settings.max_inputs_per_request,
            max_tokens=int(self._max_batch_tokens),
            max_tokens_per_input=self.settings.max_tokens_per_input,
            overlong=self.settings.overlong,
            vector_type=self.settings.vector_type,
            max_pending_requests=self.settings.max_pending_requests,
            max_pending_inputs=self.settings.max_pending_inputs,
            idle_flush=self.settings.coalesce_window,
            token_cap=self._batch_tokens,
        )
        return embed_items(
            items,
            config,
            run=self._run_batch,
            spawn=self._spawn,
            closed_error=self._closed_error,
            metrics=self._metrics,
        )

    def _batch_tokens(self) -> int:
        """Return the most tokens one request may carry: a small share of the token limit.

        A request of a fifth of a minute's tokens makes the last one of a job wait for a fifth of
        a minute of refill, and costs that much quota again whenever it fails. So requests carry
        at most `REQUEST_SHARE_OF_TOKEN_LIMIT` of the limit given or learned from the headers,
        and never less than one input's maximum.
        """
        limit = self.settings.tokens_per_minute or self._learned_token_limit()
        if not limit:
            return int(self._max_batch_tokens)
        share = max(self.settings.max_tokens_per_input, int(limit * REQUEST_SHARE_OF_TOKEN_LIMIT))
        return int(min(self._max_batch_tokens, share))

    def _learned_token_limit(self) -> int | None:
        limits = [key.limiter.statistics().limit_tokens for key in self._keys.active]
        known = [limit for limit in limits if limit]
        return min(known) if known else None

    async def _run_batch(self, pieces: list[Piece]) -> list[Outcome]:
        return await self._start().run(pieces)

    # Reporting.

    def metrics(self) -> MetricsSnapshot:
        """Return a snapshot of the counters: requests, inputs, tokens, retries, 429s, latency, cost."""
        return self._metrics.snapshot(
            concurrency_limit=self._controller.limit,
            in_flight=self._gate.in_flight,
            active_keys=len(self._keys.active),
            retired_keys=len(self._keys.keys) - len(self._keys.active),
        )

    def limiter_statistics(self) -> dict[str, LimiterStatistics]:
        """Return each key's rate-limiter state, keyed by the key's fingerprint (such as `#0 sk-...abcd`)."""
        return {key.fingerprint: key.limiter.statistics() for key in self._keys.keys}


def _as_text_list(texts: Sequence[str]) -> list[object]:
    if isinstance(texts, str | bytes):
        raise TypeError(
            f"embed() takes a sequence of texts, got a single {type(texts).__name__}; wrap it in a list: [text]"
        )
    return texts if isinstance(texts, list) else list(texts)


def _rejected_texts_error(rejected: dict[int, str], count: int) -> InvalidInputError:
    first = min(rejected)
    listed = "; ".join(f"text {item}: {rejected[item]}" for item in sorted(rejected)[:5])
    more = f"; and {len(rejected) - 5} more" if len(rejected) > 5 else ""
    return InvalidInputError(
        f"{len(rejected)} of {count} texts are invalid ({listed}{more}). Fix or drop them, or pass "
        "on_invalid='skip' to get None in their place.",
        input_index=first,
    )


async def _cancel_and_wait(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel `tasks`, wait for them, and retrieve their errors so none is reported as unretrieved."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled():
            task.exception()
