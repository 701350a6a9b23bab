"""Clients against the simulator: one that obeys the headers, one that obeys retry-after, the SDK."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Mapping

import aiohttp
import openai
import pytest

from embedlimit._clock import ScaledClock
from embedlimit.testing import Simulator, expected_vector
from tests.simulator_support import KEY, MODEL, ManualClock, post_embeddings, tokens


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def _delay_from_headers(headers: Mapping[str, str], next_tokens: int) -> float:
    """Seconds to wait before a request of `next_tokens` fits, from the last response's headers.

    The request limit is also enforced per second, so requests are spaced by 60 / RPM seconds.
    """
    requests_per_second = int(headers["x-ratelimit-limit-requests"]) / 60.0
    tokens_per_second = int(headers["x-ratelimit-limit-tokens"]) / 60.0
    missing_requests = 1 - int(headers["x-ratelimit-remaining-requests"])
    missing_tokens = next_tokens - int(headers["x-ratelimit-remaining-tokens"])
    return max(
        1.0 / requests_per_second,
        missing_requests / requests_per_second,
        missing_tokens / tokens_per_second,
    )


@pytest.mark.timeout(30)
async def test_header_obeying_client_gets_no_429(session: aiohttp.ClientSession) -> None:
    clock = ScaledClock(600.0)
    sizes = random.Random(5)
    statuses = []
    async with Simulator(keys=[KEY], clock=clock, rpm=600, tpm=6000, request_window=1.0) as sim:
        url = f"{sim.base_url}/embeddings"
        headers: Mapping[str, str] | None = None
        for _ in range(60):
            size = sizes.randint(50, 500)
            if headers is not None:
                await clock.sleep(_delay_from_headers(headers, size))
            reply = await post_embeddings(session, url, {"model": MODEL, "input": [tokens(size)]})
            statuses.append(reply.status)
            headers = reply.headers
        stats = sim.stats()
    assert statuses == [200] * 60
    assert stats.rate_limited == {}
    assert stats.tokens_accepted > 6000


async def test_retry_after_delay_is_exact(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    sizes = random.Random(11)
    rejections = 0
    async with Simulator(keys=[KEY], clock=clock, rpm=60, tpm=3000, request_window=1.0) as sim:
        url = f"{sim.base_url}/embeddings"
        for _ in range(100):
            body = {"model": MODEL, "input": [tokens(sizes.randint(1, 400))]}
            reply = await post_embeddings(session, url, body)
            if reply.status == 429:
                rejections += 1
                await clock.advance(int(reply.headers["retry-after-ms"]) / 1000.0)
                reply = await post_embeddings(session, url, body)
            assert reply.status == 200
            await clock.advance(sizes.choice([0.0, 0.2, 1.0]))
    assert rejections > 20


async def test_retry_after_parsed_from_message(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with Simulator(keys=[KEY], clock=clock, rpm=None, tpm=1000, retry_after_headers=False) as sim:
        url = f"{sim.base_url}/embeddings"
        await post_embeddings(session, url, {"model": MODEL, "input": [tokens(990)]})
        rejected = await post_embeddings(session, url, {"model": MODEL, "input": [tokens(30)]})
        await clock.advance(1.2)
        accepted = await post_embeddings(session, url, {"model": MODEL, "input": [tokens(30)]})
    assert "Please try again in 1.2s." in rejected.error["message"]
    assert "x-ratelimit-limit-requests" not in rejected.headers
    assert accepted.status == 200


async def test_openai_sdk_round_trip() -> None:
    async with (
        Simulator(keys=[KEY], time_scale=60.0) as sim,
        openai.AsyncOpenAI(base_url=sim.base_url, api_key=KEY, max_retries=0) as client,
    ):
        response = await client.embeddings.create(model=MODEL, input=["first text", "second text"])
        floats = await client.embeddings.create(model=MODEL, input="third", encoding_format="float", dimensions=32)
    assert [item.index for item in response.data] == [0, 1]
    assert response.data[0].embedding == pytest.approx(expected_vector("first text"), abs=1e-7)
    assert response.data[1].embedding == pytest.approx(expected_vector("second text"), abs=1e-7)
    assert floats.data[0].embedding == pytest.approx(expected_vector("third", dimensions=32), abs=1e-7)


async def test_openai_sdk_sees_both_429_kinds() -> None:
    async with (
        Simulator(keys=[KEY], time_scale=60.0, rpm=1) as sim,
        openai.AsyncOpenAI(base_url=sim.base_url, api_key=KEY, max_retries=0) as client,
    ):
        await client.embeddings.create(model=MODEL, input="a")
        with pytest.raises(openai.RateLimitError) as rate_limited:
            await client.embeddings.create(model=MODEL, input="a")
        sim.set_quota_exhausted(KEY)
        with pytest.raises(openai.RateLimitError) as out_of_quota:
            await client.embeddings.create(model=MODEL, input="a")
    assert rate_limited.value.code == "rate_limit_exceeded"
    assert out_of_quota.value.code == "insufficient_quota"
