"""Several API keys: load spread, retirement on quota or authentication errors, and keys kept secret."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from embedlimit._embedder import Embedder
from embedlimit._errors import AuthenticationError, EmbedLimitError, FatalError, QuotaExceededError
from embedlimit._metrics import RequestRecord
from embedlimit.testing import Simulator
from tests.embedder_support import KEYS, assert_vector_of, make_embedder, make_simulator

pytestmark = pytest.mark.timeout(60)

TEXTS = [f"key test text {number}" for number in range(200)]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with make_simulator(limit_scope="key") as simulator:
        yield simulator


async def test_requests_spread_over_keys(sim: Simulator) -> None:
    records: list[RequestRecord] = []

    async with make_embedder(sim, api_key=KEYS, max_inputs_per_request=10, on_request=records.append) as embedder:
        vectors = await embedder.embed(TEXTS)

    for text, vector in zip(TEXTS, vectors, strict=True):
        assert_vector_of(vector, text)
    used = Counter(record.key for record in records)
    assert set(used) == {"#0 sk-...abcd", "#1 sk-...efgh", "#2 sk-...ijkl"}


async def test_quota_key_retired_others_finish(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    sim.set_quota_exhausted(KEYS[1])

    with caplog.at_level(logging.WARNING, logger="embedlimit"):
        async with make_embedder(sim, api_key=KEYS, max_inputs_per_request=10) as embedder:
            vectors = await embedder.embed(TEXTS)
            snapshot = embedder.metrics()

    for text, vector in zip(TEXTS, vectors, strict=True):
        assert_vector_of(vector, text)
    assert snapshot.retired_keys == 1
    assert snapshot.active_keys == 2
    assert snapshot.rate_limited.get("quota") == 1
    retirements = [record for record in caplog.records if "retired" in record.message]
    assert len(retirements) == 1
    assert retirements[0].levelno == logging.WARNING
    assert "#1 sk-...efgh" in retirements[0].message
    assert "QuotaExceededError" in retirements[0].message


async def test_unknown_key_retired_others_finish() -> None:
    async with (
        make_simulator(keys=KEYS[:2]) as sim,
        make_embedder(sim, api_key=KEYS, max_inputs_per_request=10) as embedder,
    ):
        vectors = await embedder.embed(TEXTS[:50])
        snapshot = embedder.metrics()

    for text, vector in zip(TEXTS[:50], vectors, strict=True):
        assert_vector_of(vector, text)
    assert snapshot.retired_keys == 1
    assert snapshot.errors.get("AuthenticationError") == 1


async def test_all_keys_retired_raises_fatal(sim: Simulator) -> None:
    for key in KEYS:
        sim.set_quota_exhausted(key)

    async with make_embedder(sim, api_key=KEYS) as embedder:
        with pytest.raises(QuotaExceededError, match="all 3 API keys are retired") as caught:
            await embedder.embed(TEXTS[:5])
        with pytest.raises(FatalError):
            await embedder.embed(TEXTS[5:10])

    assert "Add credit or raise the usage limit" in str(caught.value)


async def test_all_keys_retired_ends_stream(sim: Simulator) -> None:
    for key in KEYS[:2]:
        sim.set_quota_exhausted(key)

    async with make_embedder(sim, api_key=KEYS[:2]) as embedder:
        with pytest.raises(QuotaExceededError):
            async for _ in embedder.embed_stream((number, text) for number, text in enumerate(TEXTS)):
                pass


# Keys never appear in logs, messages or reprs.


class KeyEchoServer:
    """A server that rejects every key and quotes it in full in the 401 message, as some proxies do."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.Response:
        key = request.headers.get("api-key") or request.headers.get("Authorization", "").removeprefix("Bearer ")
        error = {"message": f"Incorrect API key provided: {key}.", "type": "invalid_request_error"}
        return web.json_response({"error": error}, status=401)

    async def __aenter__(self) -> KeyEchoServer:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/v1"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def error_texts(error: BaseException) -> list[str]:
    """Return str() and repr() of an error and of every error in its cause and context chain."""
    texts = []
    current: BaseException | None = error
    while current is not None:
        texts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return texts


async def test_keys_absent_from_logs_errors_reprs(caplog: pytest.LogCaptureFixture) -> None:
    secrets = ["sk-proj-SECRETSECRET-0001", "0123456789abcdef0123456789abcdef"]
    records: list[RequestRecord] = []
    failures: list[BaseException] = []
    caplog.set_level(logging.DEBUG)

    async with KeyEchoServer() as server:
        embedder = Embedder(api_key=secrets, base_url=server.base_url, on_request=records.append)
        async with embedder:
            try:
                await embedder.embed(["alpha", "beta"])
            except EmbedLimitError as error:
                failures.append(error)
            visible = [repr(embedder), repr(embedder.settings), repr(embedder.metrics()), repr(records)]

    assert len(failures) == 1
    assert isinstance(failures[0], AuthenticationError)
    visible += error_texts(failures[0])
    visible += [record.getMessage() for record in caplog.records]
    visible += [str(record.args) for record in caplog.records]
    for secret in secrets:
        for text in visible:
            assert secret not in text
            assert secret[-12:] not in text


async def test_keys_absent_when_simulator_rejects(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    sim.set_quota_exhausted(KEYS[0])
    caplog.set_level(logging.DEBUG)

    async with make_embedder(sim, api_key=[KEYS[0], "sk-not-known-to-simulator-9999"]) as embedder:
        with pytest.raises(FatalError) as caught:
            await embedder.embed(["alpha"])

    visible = error_texts(caught.value) + [record.getMessage() for record in caplog.records]
    for secret in (KEYS[0], "sk-not-known-to-simulator-9999"):
        assert all(secret not in text for text in visible)
