"""Simulator counters: the `stats()` snapshot, per-text embed counts, `GET /stats` and resets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from embedlimit.testing import FaultKind, Simulator, input_key
from tests.simulator_support import KEY, MODEL, ManualClock, post_embeddings, tokens


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


async def test_counters_after_mixed_requests(session: aiohttp.ClientSession) -> None:
    async with Simulator(keys=[KEY], clock=ManualClock(), rpm=4, tpm=1000, request_window=None) as sim:
        url = f"{sim.base_url}/embeddings"
        await post_embeddings(session, url, {"model": MODEL, "input": [tokens(10), tokens(20)]})
        await post_embeddings(session, url, {"model": MODEL, "input": [tokens(995)]})
        await post_embeddings(session, url, {"model": MODEL, "input": ""})
        sim.faults.enqueue(FaultKind.HTTP_500)
        await post_embeddings(session, url, {"model": MODEL, "input": [tokens(5)]})
        await post_embeddings(session, url, {"model": MODEL, "input": [tokens(5)]})
        await post_embeddings(session, url, {"model": MODEL, "input": "a"}, key="sk-unknown")
        stats = sim.stats()
    assert stats.requests == 6
    assert stats.requests_by_status == {200: 1, 400: 1, 401: 1, 429: 2, 500: 1}
    assert stats.inputs_embedded == 2
    assert stats.tokens_accepted == 35
    assert stats.rate_limited == {"tokens": 1, "requests": 1}
    assert stats.faults_injected == {"http_500": 1}
    assert stats.in_flight == 0


async def test_embed_counts_detect_repeats(session: aiohttp.ClientSession) -> None:
    async with Simulator(keys=[KEY], clock=ManualClock()) as sim:
        url = f"{sim.base_url}/embeddings"
        await post_embeddings(session, url, {"model": MODEL, "input": ["a", "b", "a"]})
        await post_embeddings(session, url, {"model": MODEL, "input": "b"})
        counts = sim.embed_counts()
        stats = sim.stats()
        assert sim.embed_count("a") == 2
        assert sim.embed_count("b") == 2
        assert sim.embed_count("c") == 0
    assert counts == {input_key("a"): 2, input_key("b"): 2}
    assert stats.distinct_inputs == 2
    assert stats.repeated_inputs == 2
    assert stats.inputs_embedded == 4


async def test_peak_concurrency(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with Simulator(keys=[KEY], clock=clock, latency_base=1.0) as sim:
        url = f"{sim.base_url}/embeddings"
        pending = [
            asyncio.create_task(post_embeddings(session, url, {"model": MODEL, "input": f"text {number}"}))
            for number in range(3)
        ]
        for _ in range(100):
            if sim.stats().in_flight == 3:
                break
            await asyncio.sleep(0.01)
        assert sim.stats().in_flight == 3
        await clock.advance(1.0)
        replies = await asyncio.gather(*pending)
        stats = sim.stats()
    assert [reply.status for reply in replies] == [200, 200, 200]
    assert stats.peak_concurrency == 3
    assert stats.in_flight == 0


async def test_stats_endpoint_and_reset(session: aiohttp.ClientSession) -> None:
    async with Simulator(keys=[KEY], clock=ManualClock()) as sim:
        await post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": ["a", "b"]})
        async with session.get(f"{sim.url}/stats") as response:
            plain = await response.json()
        async with session.get(f"{sim.url}/stats", params={"inputs": "1"}) as response:
            detailed = await response.json()
        async with session.post(f"{sim.url}/stats/reset") as response:
            reset_status = response.status
        after_reset = sim.stats()
    assert plain["requests_by_status"] == {"200": 1}
    assert plain["inputs_embedded"] == 2
    assert "embed_counts" not in plain
    assert detailed["embed_counts"] == {input_key("a"): 1, input_key("b"): 1}
    assert reset_status == 200
    assert after_reset.requests == 0
    assert after_reset.distinct_inputs == 0


async def test_reset_stats_keeps_limits(session: aiohttp.ClientSession) -> None:
    async with Simulator(keys=[KEY], clock=ManualClock(), rpm=60, request_window=None) as sim:
        url = f"{sim.base_url}/embeddings"
        await post_embeddings(session, url, {"model": MODEL, "input": "a"})
        sim.reset_stats()
        reply = await post_embeddings(session, url, {"model": MODEL, "input": "a"})
        stats = sim.stats()
        sim.reset_limits()
        refilled = await post_embeddings(session, url, {"model": MODEL, "input": "a"})
    assert stats.requests == 1
    assert reply.headers["x-ratelimit-remaining-requests"] == "58"
    assert refilled.headers["x-ratelimit-remaining-requests"] == "59"


async def test_input_tracking_can_be_off(session: aiohttp.ClientSession) -> None:
    async with Simulator(keys=[KEY], clock=ManualClock(), track_inputs=False) as sim:
        await post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": ["a", "a"]})
        stats = sim.stats()
        counts = sim.embed_counts()
    assert stats.inputs_embedded == 2
    assert counts == {}
