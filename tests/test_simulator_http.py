"""The simulator over HTTP: responses, validation, authentication, limits, headers and 429s."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy
import pytest

from embedlimit._tokens import count_tokens
from embedlimit.testing import INPUT_INDEX_PATTERN, Simulator, expected_vector
from tests.simulator_support import KEY, MODEL, ManualClock, post_embeddings, tokens


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def _embed(session: aiohttp.ClientSession, sim: Simulator, **body: Any) -> Any:
    return await post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, **body})


async def test_float_response_shape(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with Simulator(keys=[KEY], clock=clock) as sim:
        reply = await _embed(session, sim, input=["hello world", "goodbye"], user="someone", extra_key=[1])
    assert reply.status == 200
    assert reply.body["object"] == "list"
    assert reply.body["model"] == MODEL
    expected_tokens = count_tokens("hello world") + count_tokens("goodbye")
    assert reply.body["usage"] == {"prompt_tokens": expected_tokens, "total_tokens": expected_tokens}
    assert [item["index"] for item in reply.body["data"]] == [0, 1]
    assert all(item["object"] == "embedding" for item in reply.body["data"])
    for item, text in zip(reply.body["data"], ["hello world", "goodbye"], strict=True):
        received = numpy.array(item["embedding"], dtype=numpy.float32)
        assert numpy.array_equal(received, numpy.array(expected_vector(text), dtype=numpy.float32))
    assert reply.headers["x-request-id"].startswith("req_")
    assert reply.headers["openai-processing-ms"] == "0"


async def test_base64_round_trip(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with Simulator(keys=[KEY], clock=clock) as sim:
        reply = await _embed(session, sim, input=["hello", "world"], encoding_format="base64")
    assert reply.status == 200
    for item, text in zip(reply.body["data"], ["hello", "world"], strict=True):
        decoded = numpy.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
        assert decoded.tolist() == expected_vector(text)


async def test_dimensions_shorten_vectors(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with Simulator(keys=[KEY], clock=clock) as sim:
        reply = await _embed(session, sim, input="hello", dimensions=64, encoding_format="base64")
        large = await post_embeddings(
            session, f"{sim.base_url}/embeddings", {"model": "text-embedding-3-large", "input": "hello"}
        )
    decoded = numpy.frombuffer(base64.b64decode(reply.body["data"][0]["embedding"]), dtype="<f4")
    assert decoded.tolist() == expected_vector("hello", dimensions=64)
    assert len(large.body["data"][0]["embedding"]) == 3072


async def test_token_arrays_match_text(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    from embedlimit._tokens import get_encoding

    encoding = get_encoding()
    assert encoding is not None
    ids = encoding.encode_ordinary("hello world")
    async with Simulator(keys=[KEY], clock=clock) as sim:
        single = await _embed(session, sim, input=ids, encoding_format="base64")
        several = await _embed(session, sim, input=[ids, ids[:1]], encoding_format="base64")
        counts = sim.embed_counts()
    assert single.body["usage"]["prompt_tokens"] == len(ids)
    assert several.body["usage"]["prompt_tokens"] == len(ids) + 1
    decoded = numpy.frombuffer(base64.b64decode(single.body["data"][0]["embedding"]), dtype="<f4")
    assert decoded.tolist() == expected_vector("hello world")
    assert len(several.body["data"]) == 2
    assert sum(counts.values()) == 3


@pytest.mark.parametrize(
    ("body", "status", "param", "code", "message_part"),
    [
        ({"input": []}, 400, "input", None, "the input array is empty"),
        ({"input": ""}, 400, "input", None, "input[0] is an empty string"),
        ({"input": ["a", "b", "", "d"]}, 400, "input", None, "input[2] is an empty string"),
        ({"input": ["a", [], "b"]}, 400, "input", None, "input[1] is an empty token array"),
        ({"input": ["a", 5]}, 400, "input", None, "input[1] is a int"),
        ({"input": [[1, "x"]]}, 400, "input", None, "input[0] contains 'x'"),
        ({"input": [[10**7]]}, 400, "input", None, "input[0] contains a token id"),
        ({"input": {"text": "a"}}, 400, "input", None, "expected a string or an array"),
        ({"input": ["a"] * 2049}, 400, "input", None, "2049 inputs in one request, over the maximum of 2048"),
        ({"input": ["a", tokens(9000)]}, 400, "input", None, "input[1] has 9000 tokens"),
        ({"input": [tokens(8000)] * 38}, 400, "input", "max_tokens_per_request", "Requested 304000 tokens, max 300000"),
        ({"input": "a", "model": "text-embedding-9"}, 404, None, "model_not_found", "`text-embedding-9` does not"),
        ({"input": "a", "model": None}, 400, "model", None, "you must provide a model parameter"),
        ({"input": "a", "dimensions": 0}, 400, "dimensions", None, "Must be between 1 and 1536"),
        ({"input": "a", "dimensions": 1537}, 400, "dimensions", None, "Must be between 1 and 1536"),
        ({"input": "a", "dimensions": "8"}, 400, "dimensions", None, "expected an integer"),
        (
            {"input": "a", "model": "text-embedding-ada-002", "dimensions": 8},
            400,
            "dimensions",
            None,
            "does not support specifying dimensions",
        ),
        ({"input": "a", "encoding_format": "int8"}, 400, "encoding_format", None, "'float' and 'base64'"),
    ],
)
async def test_validation_errors(
    session: aiohttp.ClientSession,
    clock: ManualClock,
    body: dict[str, Any],
    status: int,
    param: str | None,
    code: str | None,
    message_part: str,
) -> None:
    request = {"model": MODEL, **body}
    if request["model"] is None:
        del request["model"]
    async with Simulator(keys=[KEY], clock=clock) as sim:
        reply = await post_embeddings(session, f"{sim.base_url}/embeddings", request)
    assert reply.status == status
    assert reply.error["type"] == "invalid_request_error"
    assert reply.error["param"] == param
    assert reply.error["code"] == code
    assert message_part in reply.error["message"]


async def test_over_long_input_message(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with Simulator(keys=[KEY], clock=clock) as sim:
        reply = await _embed(session, sim, input=["ok", "fine", "", "x"])
        too_long = await _embed(session, sim, input=["ok", "fine", "x", tokens(9000)])
    match = INPUT_INDEX_PATTERN.search(reply.error["message"])
    assert match is not None
    assert match.group(1) == "2"
    long_match = INPUT_INDEX_PATTERN.search(too_long.error["message"])
    assert long_match is not None
    assert long_match.group(1) == "3"
    assert (
        "This model's maximum context length is 8192 tokens, however you requested 9000 tokens "
        "(9000 in your prompt; 0 for the completion). Please reduce your prompt; or completion length."
    ) in too_long.error["message"]


async def test_request_limits_configurable(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with Simulator(keys=[KEY], clock=clock, max_inputs=2, max_input_tokens=5, max_request_tokens=8) as sim:
        too_many = await _embed(session, sim, input=["a", "b", "c"])
        too_long = await _embed(session, sim, input=[tokens(6)])
        too_big = await _embed(session, sim, input=[tokens(5), tokens(4)])
        fine = await _embed(session, sim, input=[tokens(5), tokens(3)])
    assert too_many.status == 400
    assert too_long.status == 400
    assert too_big.error["code"] == "max_tokens_per_request"
    assert fine.status == 200


async def test_invalid_json_body(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with Simulator(keys=[KEY], clock=clock) as sim:
        broken = await post_embeddings(session, f"{sim.base_url}/embeddings", b'{"model": ')
        not_object = await post_embeddings(session, f"{sim.base_url}/embeddings", b"[1, 2]")
    assert broken.status == 400
    assert "could not parse the JSON body" in broken.error["message"]
    assert not_object.status == 400


@pytest.mark.parametrize(
    ("key", "headers", "message_part"),
    [
        (None, {}, "You didn't provide an API key"),
        ("sk-wrong", {}, "Incorrect API key provided"),
        (None, {"Authorization": f"Basic {KEY}"}, "You didn't provide an API key"),
    ],
)
async def test_auth_rejected(
    session: aiohttp.ClientSession, clock: ManualClock, key: str | None, headers: dict[str, str], message_part: str
) -> None:
    async with Simulator(keys=[KEY], clock=clock) as sim:
        reply = await post_embeddings(
            session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": "a"}, key=key, headers=headers
        )
        stats = sim.stats()
    assert reply.status == 401
    assert reply.error["code"] == "invalid_api_key"
    assert reply.error["type"] == "invalid_request_error"
    assert message_part in reply.error["message"]
    assert KEY not in reply.error["message"]
    assert "x-ratelimit-limit-requests" not in reply.headers
    assert stats.requests_by_status == {401: 1}


async def test_any_key_accepted_without_key_list(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with Simulator(clock=clock) as sim:
        reply = await post_embeddings(session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": "a"}, key="x")
    assert reply.status == 200


async def test_headers_after_known_sequence(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with Simulator(keys=[KEY], clock=clock, rpm=60, tpm=6000, request_window=None) as sim:
        first = await _embed(session, sim, input=[tokens(200)])
        await clock.advance(0.5)
        second = await _embed(session, sim, input=[tokens(1000)])
        await clock.advance(90.0)
        third = await _embed(session, sim, input="a")
    assert first.headers["x-ratelimit-limit-requests"] == "60"
    assert first.headers["x-ratelimit-limit-tokens"] == "6000"
    assert first.headers["x-ratelimit-remaining-requests"] == "59"
    assert first.headers["x-ratelimit-remaining-tokens"] == "5800"
    assert first.headers["x-ratelimit-reset-requests"] == "1s"
    assert first.headers["x-ratelimit-reset-tokens"] == "2s"

    # Half a second later 0.5 requests and 50 tokens have refilled.
    assert second.headers["x-ratelimit-remaining-requests"] == "58"
    assert second.headers["x-ratelimit-reset-requests"] == "1.5s"
    assert second.headers["x-ratelimit-remaining-tokens"] == "4850"
    assert second.headers["x-ratelimit-reset-tokens"] == "11.5s"

    assert third.headers["x-ratelimit-remaining-requests"] == "59"
    assert third.headers["x-ratelimit-reset-requests"] == "1s"
    assert third.headers["x-ratelimit-remaining-tokens"] == "5999"
    assert third.headers["x-ratelimit-reset-tokens"] == "10ms"


async def test_token_429_message_and_retry(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    options = {"max_input_tokens": 1_000_000, "max_request_tokens": 1_000_000, "request_window": None}
    async with Simulator(keys=[KEY], clock=clock, tpm=1_000_000, **options) as sim:
        assert (await _embed(session, sim, input=[tokens(999_000)])).status == 200
        rejected = await _embed(session, sim, input=[tokens(5000)])
        await clock.advance(0.239)
        early = await _embed(session, sim, input=[tokens(5000)])
        await clock.advance(0.001)
        on_time = await _embed(session, sim, input=[tokens(5000)])
        stats = sim.stats()
    assert rejected.status == 429
    assert rejected.error == {
        "message": "Rate limit reached for text-embedding-3-small in organization org-sim on tokens per min (TPM): "
        "Limit 1000000, Used 999000, Requested 5000. Please try again in 240ms. "
        "Visit https://platform.openai.com/account/rate-limits to learn more.",
        "type": "tokens",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert rejected.headers["retry-after"] == "1"
    assert rejected.headers["retry-after-ms"] == "240"
    assert rejected.headers["x-ratelimit-remaining-tokens"] == "1000"
    assert rejected.headers["x-ratelimit-reset-tokens"] == "59.94s"
    assert early.status == 429
    assert early.headers["retry-after-ms"] == "1"
    assert on_time.status == 200
    assert stats.rate_limited == {"tokens": 2}
    assert stats.tokens_accepted == 1_004_000


async def test_request_429_counts_failed_requests(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with Simulator(keys=[KEY], clock=clock, rpm=2, request_window=None) as sim:
        await _embed(session, sim, input="a")
        await _embed(session, sim, input="a")
        rejected = await _embed(session, sim, input="a")
        await clock.advance(29.0)
        retried_early = await _embed(session, sim, input="a")
        await clock.advance(30.0)
        retried_on_time = await _embed(session, sim, input="a")
    assert rejected.status == 429
    assert rejected.error["type"] == "requests"
    assert rejected.error["code"] == "rate_limit_exceeded"
    assert "on requests per min (RPM): Limit 2, Used 2, Requested 1. Please try again in 30s." in rejected.error[
        "message"
    ]
    assert rejected.headers["retry-after"] == "30"
    assert rejected.headers["retry-after-ms"] == "30000"
    assert rejected.headers["x-ratelimit-remaining-requests"] == "0"
    assert rejected.headers["x-ratelimit-reset-requests"] == "1m0s"
    # The early retry found 29/30 of a request refilled, and failing took it back.
    assert retried_early.status == 429
    assert retried_early.headers["retry-after-ms"] == "30000"
    assert retried_on_time.status == 200


async def test_short_window_429(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with Simulator(keys=[KEY], clock=clock, rpm=120, request_window=1.0) as sim:
        statuses = [(await _embed(session, sim, input="a")).status for _ in range(2)]
        rejected = await _embed(session, sim, input="a")
        await clock.advance(0.5)
        still_rejected = await _embed(session, sim, input="a")
        await clock.advance(0.5)
        accepted = await _embed(session, sim, input="a")
    assert statuses == [200, 200]
    assert rejected.status == 429
    assert "Limit 120, Used 2, Requested 1. Please try again in 1s." in rejected.error["message"]
    assert rejected.headers["x-ratelimit-remaining-requests"] == "117"
    assert still_rejected.headers["retry-after-ms"] == "500"
    assert accepted.status == 200


async def test_request_over_tpm_is_too_large(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with Simulator(keys=[KEY], clock=clock, tpm=100) as sim:
        reply = await _embed(session, sim, input=[tokens(101)])
    assert reply.status == 429
    assert reply.error["type"] == "tokens"
    assert reply.error["message"].startswith(
        "Request too large for text-embedding-3-small in organization org-sim on tokens per min (TPM): "
        "Limit 100, Requested 101."
    )
    assert "retry-after" not in reply.headers


async def test_retry_after_headers_switch_off(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with Simulator(keys=[KEY], clock=clock, rpm=1, retry_after_headers=False) as sim:
        await _embed(session, sim, input="a")
        reply = await _embed(session, sim, input="a")
    assert reply.status == 429
    assert "retry-after" not in reply.headers
    assert "retry-after-ms" not in reply.headers
    assert reply.headers["x-ratelimit-remaining-requests"] == "0"


async def test_validation_error_counts_request(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with Simulator(keys=[KEY], clock=clock, rpm=60, request_window=None) as sim:
        reply = await _embed(session, sim, input="")
    assert reply.status == 400
    assert reply.headers["x-ratelimit-remaining-requests"] == "59"
    assert reply.headers["x-ratelimit-remaining-tokens"] == "1000000"


async def test_limits_shared_by_organisation(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    keys = ["sk-a", "sk-b"]
    async with Simulator(keys=keys, clock=clock, rpm=60, request_window=None) as shared:
        url = f"{shared.base_url}/embeddings"
        await post_embeddings(session, url, {"model": MODEL, "input": "a"}, key="sk-a")
        shared_reply = await post_embeddings(session, url, {"model": MODEL, "input": "a"}, key="sk-b")
    async with Simulator(keys=keys, clock=clock, rpm=60, request_window=None, limit_scope="key") as separate:
        url = f"{separate.base_url}/embeddings"
        await post_embeddings(session, url, {"model": MODEL, "input": "a"}, key="sk-a")
        separate_reply = await post_embeddings(session, url, {"model": MODEL, "input": "a"}, key="sk-b")
    assert shared_reply.headers["x-ratelimit-remaining-requests"] == "58"
    assert separate_reply.headers["x-ratelimit-remaining-requests"] == "59"


async def test_quota_budget_exhausts_key(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with Simulator(keys=[KEY, "sk-other"], clock=clock, quota_tokens=10) as sim:
        first = await _embed(session, sim, input=[tokens(6)])
        second = await _embed(session, sim, input=[tokens(6)])
        third = await _embed(session, sim, input=[tokens(1)])
        url = f"{sim.base_url}/embeddings"
        other = await post_embeddings(session, url, {"model": MODEL, "input": "a"}, key="sk-other")
        stats = sim.stats()
    assert [first.status, second.status, third.status] == [200, 200, 429]
    assert third.error["type"] == "insufficient_quota"
    assert third.error["code"] == "insufficient_quota"
    assert third.error["message"].startswith("You exceeded your current quota, please check your plan and billing")
    assert "retry-after" not in third.headers
    assert "x-ratelimit-remaining-tokens" in third.headers
    assert other.status == 200
    assert stats.rate_limited == {"insufficient_quota": 1}


async def test_quota_switch_at_run_time(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    async with Simulator(keys=[KEY], clock=clock, rpm=60, request_window=None) as sim:
        sim.set_quota_exhausted(KEY, True)
        blocked = await _embed(session, sim, input="a")
        sim.set_quota_exhausted(KEY, False)
        served = await _embed(session, sim, input="a")
    assert blocked.status == 429
    assert blocked.error["code"] == "insufficient_quota"
    assert blocked.headers["x-ratelimit-remaining-requests"] == "59"
    assert served.status == 200
    assert served.headers["x-ratelimit-remaining-requests"] == "58"


async def test_latency_in_simulated_time(session: aiohttp.ClientSession, clock: ManualClock) -> None:
    import asyncio

    async with Simulator(keys=[KEY], clock=clock, latency_base=2.0, latency_per_token=0.5) as sim:
        pending = asyncio.create_task(_embed(session, sim, input=[tokens(4)]))
        for _ in range(50):
            if sim.stats().in_flight == 1:
                break
            await asyncio.sleep(0.01)
        await clock.advance(3.9)
        await asyncio.sleep(0.05)
        assert not pending.done()
        await clock.advance(0.1)
        reply = await pending
    assert reply.status == 200
    assert reply.headers["openai-processing-ms"] == "4000"
