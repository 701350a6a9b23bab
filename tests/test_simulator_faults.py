"""Injected faults: scripted and random, each kind's effect on the response and the counters."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import numpy
import pytest

from embedlimit._clock import ScaledClock
from embedlimit.testing import FaultKind, Faults, Simulator, expected_vector
from tests.simulator_support import KEY, MODEL, ManualClock, post_embeddings

TEXTS = ["alpha", "beta", "gamma", "delta", "epsilon"]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(keys=[KEY], clock=ManualClock(), seed=7) as simulator:
        yield simulator


async def _post_raw(
    session: aiohttp.ClientSession, sim: Simulator, encoding_format: str = "float"
) -> tuple[int, bytes]:
    body = {"model": MODEL, "input": TEXTS, "encoding_format": encoding_format}
    headers = {"Authorization": f"Bearer {KEY}"}
    async with session.post(f"{sim.base_url}/embeddings", json=body, headers=headers) as response:
        return response.status, await response.read()


@pytest.mark.parametrize(
    ("kind", "status", "message_part"),
    [
        (FaultKind.HTTP_500, 500, "The server had an error while processing your request"),
        (FaultKind.HTTP_503, 503, "The engine is currently overloaded"),
    ],
)
async def test_server_error_faults(
    session: aiohttp.ClientSession, sim: Simulator, kind: FaultKind, status: int, message_part: str
) -> None:
    sim.faults.enqueue(kind)
    reply = await post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": TEXTS})
    after = await post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": TEXTS})
    assert reply.status == status
    assert reply.error["type"] == "server_error"
    assert message_part in reply.error["message"]
    assert "x-ratelimit-remaining-requests" in reply.headers
    assert after.status == 200
    assert sim.stats().faults_injected == {kind.value: 1}


async def test_bad_gateway_fault_sends_html(session: aiohttp.ClientSession, sim: Simulator) -> None:
    sim.faults.enqueue(FaultKind.HTTP_502)
    reply = await post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": "a"})
    assert reply.status == 502
    assert reply.headers["Content-Type"].startswith("text/html")
    assert "502 Bad Gateway" in reply.body


async def test_connection_reset_fault(session: aiohttp.ClientSession, sim: Simulator) -> None:
    sim.faults.enqueue(FaultKind.CONNECTION_RESET)
    with pytest.raises(aiohttp.ClientError):
        await post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": "a"})
    after = await post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": "a"})
    stats = sim.stats()
    assert after.status == 200
    assert stats.requests_by_status == {0: 1, 200: 1}
    assert stats.inputs_embedded == 1


@pytest.mark.timeout(20)
async def test_hang_fault_outlasts_client_timeout(session: aiohttp.ClientSession) -> None:
    async with Simulator(keys=[KEY], time_scale=100.0, hang_delay=3600.0) as sim:
        sim.faults.enqueue(FaultKind.HANG)
        timeout = aiohttp.ClientTimeout(total=0.3)
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(
                f"{sim.base_url}/embeddings",
                json={"model": MODEL, "input": "a"},
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=timeout,
            ) as response:
                await response.read()
        assert sim.stats().in_flight == 1
        assert sim.stats().faults_injected == {"hang": 1}
    assert time.monotonic() - started < 5.0


async def test_hang_fault_delivers_after_delay(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with Simulator(keys=[KEY], clock=clock, hang_delay=120.0) as sim:
        sim.faults.enqueue(FaultKind.HANG)
        pending = asyncio.create_task(
            post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": "a"})
        )
        for _ in range(100):
            if sim.stats().faults_injected:
                break
            await asyncio.sleep(0.01)
        await clock.advance(119.0)
        await asyncio.sleep(0.05)
        assert not pending.done()
        await clock.advance(1.0)
        reply = await pending
    assert reply.status == 200
    assert reply.headers["openai-processing-ms"] == "120000"


async def test_malformed_json_fault(session: aiohttp.ClientSession, sim: Simulator) -> None:
    sim.faults.enqueue(FaultKind.MALFORMED_JSON)
    status, raw = await _post_raw(session, sim)
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    assert sim.stats().inputs_embedded == 0


async def test_missing_vectors_fault(session: aiohttp.ClientSession, sim: Simulator) -> None:
    sim.faults.enqueue(FaultKind.MISSING_VECTORS)
    status, raw = await _post_raw(session, sim)
    data = json.loads(raw)["data"]
    assert status == 200
    assert len(data) == len(TEXTS) - 1
    assert [item["index"] for item in data] == [0, 1, 2, 3]
    assert sim.embed_count(TEXTS[-1]) == 0
    assert sim.stats().inputs_embedded == 4


async def test_shuffled_index_fault(session: aiohttp.ClientSession, sim: Simulator) -> None:
    sim.faults.enqueue(FaultKind.SHUFFLED_INDEX)
    status, raw = await _post_raw(session, sim, "base64")
    data = json.loads(raw)["data"]
    indices = [item["index"] for item in data]
    assert status == 200
    assert sorted(indices) == list(range(len(TEXTS)))
    assert indices != sorted(indices)
    for item in data:
        vector = numpy.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
        assert vector.tolist() == expected_vector(TEXTS[item["index"]])
    assert sim.stats().inputs_embedded == len(TEXTS)


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
async def test_nan_vector_fault(session: aiohttp.ClientSession, sim: Simulator, encoding_format: str) -> None:
    sim.faults.enqueue(FaultKind.NAN_VECTOR)
    status, raw = await _post_raw(session, sim, encoding_format)
    data = json.loads(raw)["data"]
    if encoding_format == "float":
        vectors = [numpy.array(item["embedding"], dtype=numpy.float64) for item in data]
    else:
        vectors = [numpy.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in data]
    damaged = [index for index, vector in enumerate(vectors) if numpy.isnan(vector).any()]
    assert status == 200
    assert len(damaged) == 1
    assert numpy.isnan(vectors[damaged[0]]).all()
    assert len(vectors[damaged[0]]) == 1536
    assert sim.stats().inputs_embedded == len(TEXTS) - 1


@pytest.mark.parametrize(
    ("kind", "encoding_format", "damaged_value"),
    [
        (FaultKind.NULL_VECTOR, "float", None),
        (FaultKind.EMPTY_VECTOR, "float", []),
        (FaultKind.EMPTY_VECTOR, "base64", ""),
    ],
)
async def test_one_vector_damaged(
    session: aiohttp.ClientSession, sim: Simulator, kind: FaultKind, encoding_format: str, damaged_value: object
) -> None:
    sim.faults.enqueue(kind)
    status, raw = await _post_raw(session, sim, encoding_format)
    data = json.loads(raw)["data"]
    damaged = [item["index"] for item in data if item["embedding"] == damaged_value]
    assert status == 200
    assert len(damaged) == 1
    assert sim.embed_count(TEXTS[damaged[0]]) == 0
    assert sim.stats().inputs_embedded == len(TEXTS) - 1


async def test_script_runs_in_order(session: aiohttp.ClientSession, sim: Simulator) -> None:
    sim.faults.enqueue(None, FaultKind.HTTP_500, "http_503")
    assert sim.faults.pending == 3
    statuses = []
    for _ in range(4):
        reply = await post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": "a"})
        statuses.append(reply.status)
    assert statuses == [200, 500, 503, 200]
    assert sim.faults.pending == 0


async def test_script_skips_rejected_requests(session: aiohttp.ClientSession, sim: Simulator) -> None:
    sim.faults.enqueue(FaultKind.HTTP_500)
    invalid = await post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": ""})
    faulty = await post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": "a"})
    assert invalid.status == 400
    assert faulty.status == 500


async def test_fault_rates_are_seeded() -> None:
    sequences = []
    for _ in range(2):
        faults = Faults({FaultKind.HTTP_500: 0.3, "hang": 0.2}, seed=3)
        sequences.append([faults.next_fault() for _ in range(200)])
    assert sequences[0] == sequences[1]
    counts = {kind: sequences[0].count(kind) for kind in (FaultKind.HTTP_500, FaultKind.HANG, None)}
    assert 40 <= counts[FaultKind.HTTP_500] <= 80
    assert 20 <= counts[FaultKind.HANG] <= 60
    assert 80 <= counts[None] <= 120


async def test_fault_rate_one_hits_every_request(session: aiohttp.ClientSession) -> None:
    async with Simulator(keys=[KEY], clock=ManualClock(), fault_rates={"http_503": 1.0}) as sim:
        statuses = []
        for _ in range(3):
            reply = await post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": "a"})
            statuses.append(reply.status)
        sim.faults.set_rate(FaultKind.HTTP_503, 0.0)
        after = await post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": "a"})
    assert statuses == [503, 503, 503]
    assert after.status == 200


def test_fault_rates_validated() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        Faults({"http_500": 1.5})
    with pytest.raises(ValueError, match=r"add up to 1\.2"):
        Faults({"http_500": 0.6, "http_503": 0.6})
    with pytest.raises(ValueError, match="not a valid FaultKind"):
        Faults({"http_504": 0.1})


async def test_stop_ends_latency_sleep() -> None:
    clock = ScaledClock(10.0)
    async with Simulator(keys=[KEY], clock=clock, latency_base=600.0) as sim, aiohttp.ClientSession() as session:
        pending = asyncio.create_task(
            post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": "a"})
        )
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await sim.stop()
        reply = await pending
    assert time.monotonic() - started < 5.0
    assert reply.status == 200
