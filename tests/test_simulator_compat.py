"""Azure OpenAI paths and the modes that mimic other OpenAI-compatible servers."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import aiohttp
import numpy
import pytest

from embedlimit.testing import Simulator, expected_vector
from tests.simulator_support import KEY, MODEL, ManualClock, post_embeddings

API_VERSION = "2024-02-01"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def _azure_url(sim: Simulator, deployment: str, api_version: str | None = API_VERSION) -> str:
    url = f"{sim.azure_endpoint}/openai/deployments/{deployment}/embeddings"
    return url if api_version is None else f"{url}?api-version={api_version}"


async def test_azure_path_with_api_key(session: aiohttp.ClientSession) -> None:
    async with Simulator(keys=[KEY], clock=ManualClock()) as sim:
        reply = await post_embeddings(
            session, _azure_url(sim, MODEL), {"input": ["hello"]}, key=None, headers={"api-key": KEY}
        )
    assert reply.status == 200
    assert reply.body["model"] == MODEL
    assert numpy.array(reply.body["data"][0]["embedding"], dtype=numpy.float32).tolist() == expected_vector("hello")


async def test_azure_deployment_maps_model(session: aiohttp.ClientSession) -> None:
    deployments = {"my-embedder": "text-embedding-3-large"}
    async with Simulator(keys=[KEY], clock=ManualClock(), azure_deployments=deployments) as sim:
        reply = await post_embeddings(
            session, _azure_url(sim, "my-embedder"), {"input": "hello", "model": "ignored"}, key=None,
            headers={"api-key": KEY},
        )
    assert reply.status == 200
    assert reply.body["model"] == "text-embedding-3-large"
    assert len(reply.body["data"][0]["embedding"]) == 3072


async def test_azure_bearer_token_accepted(session: aiohttp.ClientSession) -> None:
    async with Simulator(keys=[KEY], clock=ManualClock()) as sim:
        reply = await post_embeddings(session, _azure_url(sim, MODEL), {"input": "hello"})
    assert reply.status == 200


@pytest.mark.parametrize(
    ("deployment", "api_version", "headers", "status", "code"),
    [
        ("no-such-deployment", API_VERSION, {"api-key": KEY}, 404, "DeploymentNotFound"),
        (MODEL, None, {"api-key": KEY}, 404, "404"),
        (MODEL, API_VERSION, {"api-key": "wrong"}, 401, "invalid_api_key"),
        (MODEL, API_VERSION, {}, 401, "invalid_api_key"),
    ],
)
async def test_azure_path_rejections(
    session: aiohttp.ClientSession,
    deployment: str,
    api_version: str | None,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    async with Simulator(keys=[KEY], clock=ManualClock()) as sim:
        reply = await post_embeddings(
            session, _azure_url(sim, deployment, api_version), {"input": "a"}, key=None, headers=headers
        )
    assert reply.status == status
    assert reply.error["code"] == code


async def test_azure_style_headers_and_429(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with Simulator(keys=[KEY], clock=clock, rpm=2, tpm=6000, request_window=None) as sim:
        url = _azure_url(sim, MODEL, "2023-05-15")
        first = await post_embeddings(session, url, {"input": "a"}, key=None, headers={"api-key": KEY})
        await post_embeddings(session, url, {"input": "a"}, key=None, headers={"api-key": KEY})
        rejected = await post_embeddings(session, url, {"input": "a"}, key=None, headers={"api-key": KEY})
    assert first.headers["x-ratelimit-reset-requests"] == "30"
    assert first.headers["x-ratelimit-reset-tokens"] == "1"
    assert first.headers["x-ratelimit-remaining-tokens"] == "5999"
    assert rejected.status == 429
    assert rejected.body["error"]["code"] == "429"
    assert rejected.body["error"]["message"].startswith(
        "Requests to the Embeddings_Create Operation under Azure OpenAI API version 2023-05-15 have exceeded "
        "call rate limit of your current OpenAI S0 pricing tier. Please retry after 30 seconds."
    )
    assert rejected.headers["x-ratelimit-reset-requests"] == "60"
    assert rejected.headers["retry-after"] == "30"
    assert rejected.headers["retry-after-ms"] == "30000"


async def test_azure_style_on_openai_path(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with Simulator(keys=[KEY], clock=clock, tpm=100, azure_style=True) as sim:
        url = f"{sim.base_url}/embeddings"
        await post_embeddings(session, url, {"model": MODEL, "input": [[1] * 90]})
        rejected = await post_embeddings(session, url, {"model": MODEL, "input": [[1] * 20]})
    assert rejected.status == 429
    assert "exceeded token rate limit" in rejected.body["error"]["message"]
    assert "Please retry after 6 seconds." in rejected.body["error"]["message"]
    assert rejected.headers["x-ratelimit-reset-tokens"] == "54"


async def test_openai_style_forced_on_azure_path(session: aiohttp.ClientSession) -> None:
    async with Simulator(keys=[KEY], clock=ManualClock(), rpm=1, azure_style=False) as sim:
        url = _azure_url(sim, MODEL)
        await post_embeddings(session, url, {"input": "a"}, key=None, headers={"api-key": KEY})
        rejected = await post_embeddings(session, url, {"input": "a"}, key=None, headers={"api-key": KEY})
    assert rejected.error["code"] == "rate_limit_exceeded"
    assert rejected.headers["x-ratelimit-reset-requests"] == "1m0s"


async def test_no_rate_limit_headers_mode(session: aiohttp.ClientSession) -> None:
    async with Simulator(keys=[KEY], clock=ManualClock(), rpm=1, rate_limit_headers=False) as sim:
        url = f"{sim.base_url}/embeddings"
        accepted = await post_embeddings(session, url, {"model": MODEL, "input": "a"})
        rejected = await post_embeddings(session, url, {"model": MODEL, "input": "a"})
    for reply in (accepted, rejected):
        assert not [name for name in reply.headers if name.lower().startswith("x-ratelimit-")]
    assert rejected.status == 429
    assert rejected.headers["retry-after"] == "60"


async def test_encoding_format_ignored_mode(session: aiohttp.ClientSession) -> None:
    async with Simulator(keys=[KEY], clock=ManualClock(), honor_encoding_format=False) as sim:
        reply = await post_embeddings(
            session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": "a", "encoding_format": "base64"}
        )
    embedding = reply.body["data"][0]["embedding"]
    assert isinstance(embedding, list)
    assert numpy.array(embedding, dtype=numpy.float32).tolist() == expected_vector("a")


async def test_encoding_format_honoured_by_default(session: aiohttp.ClientSession) -> None:
    async with Simulator(keys=[KEY], clock=ManualClock()) as sim:
        reply = await post_embeddings(
            session, f"{sim.base_url}/embeddings", {"model": MODEL, "input": "a", "encoding_format": "base64"}
        )
    embedding = reply.body["data"][0]["embedding"]
    assert isinstance(embedding, str)
    assert len(base64.b64decode(embedding)) == 4 * 1536
