"""embed_stream: keyed results as requests complete, failed items reported, bounded read-ahead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy
import pytest

from embedlimit._errors import InvalidInputError, ServerError
from embedlimit._metrics import RequestRecord
from embedlimit._packing import split_text
from embedlimit._retry import RetryPolicy
from embedlimit.testing import Simulator
from tests.embedder_support import assert_vector_of, make_embedder, make_simulator, weighted_unit_average

pytestmark = pytest.mark.timeout(60)

LONG_TEXT = "Streams of text flow through the embedder, one request at a time. " * 40


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with make_simulator() as simulator:
        yield simulator


async def test_stream_sync_iterable(sim: Simulator) -> None:
    items = [(f"key-{number}", f"stream text {number}") for number in range(500)]

    async with make_embedder(sim, max_inputs_per_request=50) as embedder:
        results = [result async for result in embedder.embed_stream(iter(items))]

    assert sorted(result.key for result in results) == sorted(key for key, _ in items)
    texts = dict(items)
    for result in results:
        assert result.ok
        assert result.reason is None
        assert_vector_of(result.vector, texts[result.key])
    assert sim.stats().requests == 10


async def test_stream_async_iterable(sim: Simulator) -> None:
    async def source() -> AsyncIterator[tuple[int, str]]:
        for number in range(120):
            if number % 40 == 0:
                await asyncio.sleep(0)
            yield number, f"async text {number}"

    async with make_embedder(sim, max_inputs_per_request=25) as embedder:
        results = [result async for result in embedder.embed_stream(source())]

    assert sorted(result.key for result in results) == list(range(120))
    for result in results:
        assert_vector_of(result.vector, f"async text {result.key}")


async def test_stream_reports_rejected_items(sim: Simulator) -> None:
    items = [(0, "fine"), (1, ""), (2, None), (3, "also fine"), (4, 17)]

    async with make_embedder(sim) as embedder:
        results = {result.key: result async for result in embedder.embed_stream(items)}  # type: ignore[arg-type]
        skipped = embedder.metrics().skipped_inputs

    assert set(results) == {0, 1, 2, 3, 4}
    assert results[0].ok
    assert results[3].ok
    for key in (1, 2, 4):
        assert not results[key].ok
        assert results[key].vector is None
        assert isinstance(results[key].error, InvalidInputError)
    assert "empty or only whitespace" in (results[1].reason or "")
    assert "text is None" in (results[2].reason or "")
    assert "of type int" in (results[4].reason or "")
    assert skipped == 3


async def test_stream_isolates_server_rejected_item() -> None:
    items = [(number, f"neighbour {number}") for number in range(10)]
    items[4] = (4, LONG_TEXT)

    async with make_simulator(max_input_tokens=50) as sim, make_embedder(sim) as embedder:
        results = {result.key: result async for result in embedder.embed_stream(items)}

    assert isinstance(results[4].error, InvalidInputError)
    assert results[4].error.status == 400
    for number in range(10):
        if number != 4:
            assert_vector_of(results[number].vector, f"neighbour {number}")


async def test_stream_split_policy_averages() -> None:
    async with (
        make_simulator(max_input_tokens=50) as sim,
        make_embedder(sim, max_tokens_per_input=50, overlong="split", max_inputs_per_request=3) as embedder,
    ):
        results = {result.key: result async for result in embedder.embed_stream([("long", LONG_TEXT)])}

    pieces = [(text, tokens) for text, tokens in split_text(LONG_TEXT, 50) if not text.isspace()]
    expected = weighted_unit_average([text for text, _ in pieces], [tokens for _, tokens in pieces])
    assert len(pieces) > 3  # the pieces span several requests
    assert numpy.allclose(results["long"].vector, expected, atol=1e-5)  # type: ignore[arg-type]


async def test_stream_failed_request_yields_failures(sim: Simulator) -> None:
    sim.faults.set_rate("http_500", 1.0)
    items = [(number, f"text {number}") for number in range(20)]

    async with make_embedder(sim, max_inputs_per_request=10, retry=RetryPolicy(max_attempts=2)) as embedder:
        results = {result.key: result async for result in embedder.embed_stream(items)}
        sim.faults.set_rate("http_500", 0.0)
        later = [result async for result in embedder.embed_stream([("later", "text after the outage")])]

    assert sorted(results) == list(range(20))
    assert all(not result.ok for result in results.values())
    assert all(isinstance(result.error, ServerError) for result in results.values())
    assert all(result.error.attempt == 2 for result in results.values())  # type: ignore[union-attr]
    assert later[0].ok


async def test_stream_rejects_items_not_pairs(sim: Simulator) -> None:
    async with make_embedder(sim) as embedder:
        with pytest.raises(TypeError, match="stream item 1 is str 'oops'; expected a \\(key, text\\) tuple"):
            async for _ in embedder.embed_stream([(0, "fine"), "oops"]):  # type: ignore[list-item]
                pass


async def test_stream_flushes_when_source_waits(sim: Simulator) -> None:
    release = asyncio.Event()

    async def trickle() -> AsyncIterator[tuple[int, str]]:
        for number in range(3):
            yield number, f"early {number}"
        await release.wait()
        yield 3, "late"

    received = []
    async with make_embedder(sim) as embedder:
        async for result in embedder.embed_stream(trickle()):
            received.append(result.key)
            if len(received) == 3:
                release.set()

    assert sorted(received[:3]) == [0, 1, 2]
    assert received[3] == 3


async def test_stream_reads_ahead_boundedly(sim: Simulator) -> None:
    pulled = 0

    async def source() -> AsyncIterator[tuple[int, str]]:
        nonlocal pulled
        for number in range(5000):
            pulled += 1
            yield number, f"bounded {number}"

    async with make_embedder(sim, max_inputs_per_request=10, max_pending_requests=2) as embedder:
        stream = embedder.embed_stream(source())
        first = await stream.__anext__()
        await asyncio.sleep(0.05)
        pulled_while_paused = pulled
        rest = [result async for result in stream]

    assert first.ok
    assert pulled_while_paused < 1000
    assert len(rest) == 4999


async def test_stream_bounds_pending_inputs() -> None:
    """A slow consumer holds back new requests once `max_pending_inputs` inputs wait for it."""
    from embedlimit import Embedder

    async with (
        Simulator(rpm=None, tpm=None, request_window=None) as sim,
        Embedder(api_key="sk-test-bound", base_url=sim.base_url, max_inputs_per_request=100,
                 max_pending_inputs=300) as embedder,
    ):
        stream = embedder.embed_stream((index, f"text {index}") for index in range(2000))
        first = await anext(stream)
        for _ in range(50):
            await asyncio.sleep(0.01)
        sent_while_waiting = sim.stats().inputs_embedded
        rest = [result async for result in stream]

    assert first.ok
    # The batch of the first result is consumed, so 300 more inputs may be pending beside it.
    assert sent_while_waiting <= 100 + 300
    assert len(rest) == 1999


async def test_stream_caps_request_tokens() -> None:
    """A request carries at most 5% of the token limit given up front."""
    records: list[RequestRecord] = []
    texts = [(index, "word " * 400) for index in range(60)]  # about 400 tokens each

    async with (
        make_simulator(rpm=None, tpm=200_000, request_window=None) as sim,
        make_embedder(sim, on_request=records.append, tokens_per_minute=200_000) as embedder,
    ):
        results = [result async for result in embedder.embed_stream(texts)]

    assert all(result.ok for result in results)
    assert max(record.tokens for record in records) <= 10_000
    assert sum(record.inputs for record in records) == 60


async def test_request_cap_follows_learned_limit() -> None:
    async with (
        make_simulator(rpm=None, tpm=400_000, request_window=None) as sim,
        make_embedder(sim) as embedder,
    ):
        before = embedder._batch_tokens()
        await embedder.embed(["one text"])
        after = embedder._batch_tokens()

    assert before == 300_000
    assert after == 20_000
