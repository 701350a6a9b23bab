"""Embedder under faults: bad responses are retried, never zipped to wrong inputs, rejected inputs isolated."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from embedlimit._embedder import Embedder
from embedlimit._errors import InvalidInputError, ServerError
from embedlimit._retry import RetryPolicy
from embedlimit.testing import Simulator, expected_vector
from tests.embedder_support import KEY, assert_vector_of, make_embedder, make_simulator

pytestmark = pytest.mark.timeout(60)

TEXTS = [f"fault test text {number}" for number in range(12)]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with make_simulator() as simulator:
        yield simulator


@pytest.mark.parametrize(
    "fault",
    [
        "missing_vectors",
        "nan_vector",
        "null_vector",
        "empty_vector",
        "malformed_json",
        "http_500",
        "http_502",
        "http_503",
        "connection_reset",
    ],
)
async def test_fault_retried_then_correct(sim: Simulator, fault: str) -> None:
    sim.faults.enqueue(fault)

    async with make_embedder(sim) as embedder:
        vectors = await embedder.embed(TEXTS)
        snapshot = embedder.metrics()

    for text, vector in zip(TEXTS, vectors, strict=True):
        assert_vector_of(vector, text)
    assert sim.stats().faults_injected == {fault: 1}
    assert snapshot.retries == 1
    assert snapshot.failed_requests == 1
    assert snapshot.succeeded_requests == 1


async def test_count_mismatch_counted_as_invalid_response(sim: Simulator) -> None:
    sim.faults.enqueue("missing_vectors")

    async with make_embedder(sim) as embedder:
        await embedder.embed(TEXTS)
        errors = dict(embedder.metrics().errors)

    assert errors == {"InvalidResponseError": 1}


async def test_shuffled_index_restores_order(sim: Simulator) -> None:
    sim.faults.enqueue("shuffled_index")

    async with make_embedder(sim) as embedder:
        vectors = await embedder.embed(TEXTS)
        retries = embedder.metrics().retries

    for text, vector in zip(TEXTS, vectors, strict=True):
        assert_vector_of(vector, text)
    assert sim.stats().faults_injected == {"shuffled_index": 1}
    assert retries == 0


async def test_hang_times_out_and_retries() -> None:
    async with make_simulator(hang_delay=1e6) as sim:
        sim.faults.enqueue("hang")
        async with make_embedder(sim, read_timeout=0.2) as embedder:
            vectors = await embedder.embed(TEXTS[:3])
            errors = dict(embedder.metrics().errors)

    assert_vector_of(vectors[2], TEXTS[2])
    assert errors == {"RequestTimeoutError": 1}


async def test_persistent_server_error_raises(sim: Simulator) -> None:
    sim.faults.set_rate("http_500", 1.0)

    async with make_embedder(sim, retry=RetryPolicy(max_attempts=3)) as embedder:
        with pytest.raises(ServerError) as caught:
            await embedder.embed(TEXTS)
        snapshot = embedder.metrics()

    assert caught.value.status == 500
    assert caught.value.attempt == 3
    assert snapshot.requests == 3
    assert snapshot.retries == 2


async def test_random_faults_never_mix_vectors(sim: Simulator) -> None:
    rates = {"missing_vectors": 0.1, "shuffled_index": 0.2, "nan_vector": 0.1, "http_503": 0.1, "null_vector": 0.05}
    sim.faults.set_rates(rates)
    texts = [f"mixed fault text {number}" for number in range(400)]

    async with make_embedder(sim, max_inputs_per_request=20, retry=RetryPolicy(max_attempts=20)) as embedder:
        vectors = await embedder.embed(texts)

    for text, vector in zip(texts, vectors, strict=True):
        assert_vector_of(vector, text)
    assert sum(sim.stats().faults_injected.values()) > 0


async def test_rate_limit_429_retried() -> None:
    # The simulator allows 1 request per simulated second; the embedder starts out believing
    # in far more, so its first burst meets 429s until the headers teach it the real limit.
    async with make_simulator(rpm=60, tpm=None) as sim:
        embedder = make_embedder(
            sim, requests_per_minute=100_000, tokens_per_minute=10_000_000, max_inputs_per_request=1, coalesce_window=0
        )
        async with embedder:
            vectors = await embedder.embed(TEXTS[:8])
            snapshot = embedder.metrics()

    for text, vector in zip(TEXTS[:8], vectors, strict=True):
        assert_vector_of(vector, text)
    assert snapshot.rate_limited.get("requests", 0) >= 1
    assert snapshot.succeeded_requests == 8


# Isolation of rejected inputs by a server that does not name the input.

POISON = "poison"


class RejectingServer:
    """An embeddings server that answers 400 without an input index to any request containing POISON."""

    def __init__(self, *, reject_everything: bool = False) -> None:
        self.reject_everything = reject_everything
        self.request_sizes: list[int] = []
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        texts: list[str] = body["input"]
        self.request_sizes.append(len(texts))
        if self.reject_everything or any(POISON in text for text in texts):
            message = "'$.input' is invalid. Please check the API reference."
            error = {"message": message, "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=400)
        data = [{"object": "embedding", "index": index, "embedding": _base64(text)} for index, text in enumerate(texts)]
        return web.json_response({"object": "list", "data": data, "usage": {"prompt_tokens": 1, "total_tokens": 1}})

    async def __aenter__(self) -> RejectingServer:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def _base64(text: str) -> str:
    values = expected_vector(text)
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


async def test_bisection_isolates_unnamed_bad_input() -> None:
    texts = [f"clean text {number}" for number in range(16)]
    texts[5] = f"{POISON} five"
    texts[12] = f"{POISON} twelve"

    async with RejectingServer() as server:
        embedder = Embedder(api_key=KEY, base_url=server.base_url, on_invalid="skip", coalesce_window=0)
        async with embedder:
            vectors = await embedder.embed(texts)

    assert vectors[5] is None
    assert vectors[12] is None
    for position, text in enumerate(texts):
        if position not in (5, 12):
            assert_vector_of(vectors[position], text)
    assert server.request_sizes[0] == 16
    assert len(server.request_sizes) <= 1 + 2 * 2 * 4  # two bad inputs, four halvings each


async def test_bisection_budget_bounds_requests() -> None:
    texts = [f"clean text {number}" for number in range(64)]

    async with RejectingServer(reject_everything=True) as server:
        embedder = Embedder(
            api_key=KEY, base_url=server.base_url, max_isolation_requests=6, coalesce_window=0, on_invalid="skip"
        )
        async with embedder:
            vectors = await embedder.embed(texts)

    assert vectors == [None] * 64
    assert len(server.request_sizes) == 1 + 6


async def test_bisection_raises_for_first_rejected_text() -> None:
    texts = ["clean one", f"{POISON} two", "clean three"]

    async with (
        RejectingServer() as server,
        Embedder(api_key=KEY, base_url=server.base_url, coalesce_window=0) as embedder,
    ):
        with pytest.raises(InvalidInputError) as caught:
            await embedder.embed(texts)

    assert caught.value.input_index == 1
