"""Embedder against the simulator: order, formats, Azure, packing, policies, coalescing, settings."""

from __future__ import annotations

import asyncio
import math
from array import array
from collections.abc import AsyncIterator
from typing import Any

import numpy
import pytest

from embedlimit._embedder import Embedder
from embedlimit._errors import ConfigurationError, InvalidInputError
from embedlimit._metrics import RequestRecord
from embedlimit._packing import split_text
from embedlimit._results import EmbedderClosedError
from embedlimit._tokens import count_tokens_batch
from embedlimit.testing import Simulator
from tests.embedder_support import (
    KEY,
    KEYS,
    assert_vector_of,
    make_embedder,
    make_simulator,
    weighted_unit_average,
)

pytestmark = pytest.mark.timeout(60)

LONG_TEXT = "The quick brown fox jumps over the lazy dog, again and again. " * 40


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with make_simulator() as simulator:
        yield simulator


# Order, vector types and formats.


async def test_embed_returns_vectors_in_order(sim: Simulator) -> None:
    texts = [f"text number {number}" for number in range(300)]

    async with make_embedder(sim, max_inputs_per_request=64) as embedder:
        vectors = await embedder.embed(texts)

    assert len(vectors) == len(texts)
    for text, vector in zip(texts, vectors, strict=True):
        assert_vector_of(vector, text)
    assert sim.stats().requests == math.ceil(300 / 64)


async def test_embed_numpy_vectors_are_float32(sim: Simulator) -> None:
    async with make_embedder(sim) as embedder:
        vectors = await embedder.embed(["alpha"])

    vector = vectors[0]
    assert isinstance(vector, numpy.ndarray)
    assert vector.dtype == numpy.float32
    assert vector.shape == (1536,)


async def test_embed_array_vector_type(sim: Simulator) -> None:
    async with make_embedder(sim, vector_type="array") as embedder:
        vectors = await embedder.embed(["alpha", "beta"])

    assert all(isinstance(vector, array) and vector.typecode == "f" for vector in vectors)
    assert_vector_of(vectors[1], "beta")


async def test_embed_with_dimensions(sim: Simulator) -> None:
    async with make_embedder(sim, dimensions=256) as embedder:
        vectors = await embedder.embed(["alpha"])

    assert_vector_of(vectors[0], "alpha", dimensions=256)


async def test_embed_float_response_from_server_ignoring_format() -> None:
    async with make_simulator(honor_encoding_format=False) as sim, make_embedder(sim) as embedder:
        vectors = await embedder.embed(["alpha", "beta"])

    assert_vector_of(vectors[0], "alpha")
    assert_vector_of(vectors[1], "beta")


async def test_embed_float_encoding_format(sim: Simulator) -> None:
    async with make_embedder(sim, encoding_format="float", vector_type="array") as embedder:
        vectors = await embedder.embed(["alpha"])

    assert_vector_of(vectors[0], "alpha")


async def test_embed_through_azure_deployment() -> None:
    deployments = {"embeddings-prod": "text-embedding-3-small"}
    async with make_simulator(azure_deployments=deployments) as sim:
        embedder = Embedder(
            api_key=KEY,
            azure_endpoint=sim.azure_endpoint,
            azure_deployment="embeddings-prod",
            api_version=sim.config.azure_api_version,
            clock=sim.clock,
        )
        async with embedder:
            vectors = await embedder.embed(["alpha", "beta"])
        expected_prefix = f"{sim.azure_endpoint}/openai/deployments/embeddings-prod/embeddings?api-version="

    assert embedder.settings.endpoint.url.startswith(expected_prefix)
    assert_vector_of(vectors[0], "alpha")
    assert_vector_of(vectors[1], "beta")


async def test_embed_empty_list_sends_nothing(sim: Simulator) -> None:
    async with make_embedder(sim) as embedder:
        assert await embedder.embed([]) == []

    assert sim.stats().requests == 0


async def test_embed_rejects_single_string(sim: Simulator) -> None:
    async with make_embedder(sim) as embedder:
        with pytest.raises(TypeError, match="wrap it in a list"):
            await embedder.embed("alpha")


# Packing.


async def test_requests_respect_token_maximum(sim: Simulator) -> None:
    texts = [f"{LONG_TEXT} {number}" for number in range(20)]
    per_text = count_tokens_batch([texts[0]])[0]
    records: list[RequestRecord] = []

    embedder = make_embedder(
        sim, max_tokens_per_request=per_text * 3, max_tokens_per_input=per_text, on_request=records.append
    )
    async with embedder:
        vectors = await embedder.embed(texts)

    assert all(vector is not None for vector in vectors)
    assert all(record.inputs <= 3 for record in records)
    assert sim.stats().requests == 7


async def test_tokens_per_minute_caps_request_size(sim: Simulator) -> None:
    texts = [f"{LONG_TEXT} {number}" for number in range(6)]
    per_text = count_tokens_batch([texts[0]])[0]
    records: list[RequestRecord] = []

    embedder = make_embedder(
        sim, tokens_per_minute=per_text * 2, max_tokens_per_input=per_text, on_request=records.append
    )
    async with embedder:
        await embedder.embed(texts)

    assert max(record.inputs for record in records) <= 2


# Over-long texts.


async def test_truncate_policy_embeds_prefix() -> None:
    async with (
        make_simulator(max_input_tokens=50) as sim,
        make_embedder(sim, max_tokens_per_input=50, overlong="truncate") as embedder,
    ):
        vectors = await embedder.embed([LONG_TEXT, "short"])

    prefix = split_text(LONG_TEXT, 50)[0][0]
    assert_vector_of(vectors[0], prefix)
    assert_vector_of(vectors[1], "short")


async def test_split_policy_averages_pieces() -> None:
    async with (
        make_simulator(max_input_tokens=50) as sim,
        make_embedder(sim, max_tokens_per_input=50, overlong="split") as embedder,
    ):
        vectors = await embedder.embed(["before", LONG_TEXT, "after"])

    pieces = [(text, tokens) for text, tokens in split_text(LONG_TEXT, 50) if not text.isspace()]
    expected = weighted_unit_average([text for text, _ in pieces], [tokens for _, tokens in pieces])
    assert len(pieces) > 1
    assert numpy.allclose(vectors[1], expected, atol=1e-5)  # type: ignore[arg-type]
    assert math.isclose(float(numpy.linalg.norm(vectors[1])), 1.0, rel_tol=1e-5)  # type: ignore[arg-type]
    assert_vector_of(vectors[0], "before")
    assert_vector_of(vectors[2], "after")


async def test_error_policy_raises_before_sending() -> None:
    async with (
        make_simulator(max_input_tokens=50) as sim,
        make_embedder(sim, max_tokens_per_input=50, overlong="error") as embedder,
    ):
        with pytest.raises(InvalidInputError, match="more than the maximum of 50 per input") as caught:
            await embedder.embed(["short", LONG_TEXT])
        skipped = await embedder.embed(["short", LONG_TEXT], on_invalid="skip")

        assert caught.value.input_index == 1
        assert skipped[1] is None
        assert_vector_of(skipped[0], "short")
        assert sim.stats().requests == 1


# Invalid texts.


async def test_invalid_texts_raise_before_any_request(sim: Simulator) -> None:
    async with make_embedder(sim) as embedder:
        with pytest.raises(InvalidInputError) as caught:
            await embedder.embed(["fine", "", None, 7, "lone \ud800 surrogate"])  # type: ignore[list-item]

    message = str(caught.value)
    assert "4 of 5 texts are invalid" in message
    assert "text 1: text is empty or only whitespace" in message
    assert "text 2: text is None" in message
    assert "text 3: text is of type int" in message
    assert "text 4: text contains a lone surrogate" in message
    assert "on_invalid='skip'" in message
    assert caught.value.input_index == 1
    assert sim.stats().requests == 0


async def test_invalid_texts_skipped_as_none(sim: Simulator) -> None:
    async with make_embedder(sim, on_invalid="skip") as embedder:
        vectors = await embedder.embed(["fine", "   ", None, "also fine"])  # type: ignore[list-item]
        skipped = embedder.metrics().skipped_inputs

    assert vectors[1] is None
    assert vectors[2] is None
    assert_vector_of(vectors[0], "fine")
    assert_vector_of(vectors[3], "also fine")
    assert skipped == 2


async def test_server_rejected_text_isolated() -> None:
    texts = [f"neighbour {number}" for number in range(10)]
    texts[6] = LONG_TEXT  # within our 8,192-token check, over the simulator's 50
    async with (
        make_simulator(max_input_tokens=50) as sim,
        make_embedder(sim, on_invalid="skip", coalesce_window=0) as embedder,
    ):
        vectors = await embedder.embed(texts)

        assert vectors[6] is None
        for position, text in enumerate(texts):
            if position != 6:
                assert_vector_of(vectors[position], text)
        assert sim.stats().requests_by_status[400] == 2  # the batch, then the input alone
        assert sim.stats().requests_by_status[200] == 1


async def test_server_rejected_text_raises_with_index() -> None:
    texts = ["first", LONG_TEXT, "third"]
    async with make_simulator(max_input_tokens=50) as sim, make_embedder(sim) as embedder:
        with pytest.raises(InvalidInputError, match="text 1 was rejected by the server") as caught:
            await embedder.embed(texts)

    assert caught.value.input_index == 1
    assert caught.value.status == 400


# Micro-batching.


async def test_concurrent_single_calls_share_requests(sim: Simulator) -> None:
    texts = [f"web request {number}" for number in range(40)]

    async with make_embedder(sim, coalesce_window=5.0) as embedder:
        results = await asyncio.gather(*(embedder.embed([text]) for text in texts))

    for text, result in zip(texts, results, strict=True):
        assert len(result) == 1
        assert_vector_of(result[0], text)
    assert sim.stats().requests == 1


async def test_coalescing_off_sends_one_request_per_call(sim: Simulator) -> None:
    async with make_embedder(sim, coalesce_window=0) as embedder:
        await asyncio.gather(*(embedder.embed([f"text {number}"]) for number in range(5)))

    assert sim.stats().requests == 5


# Metrics.


async def test_metrics_count_requests_tokens_cost(sim: Simulator) -> None:
    records: list[RequestRecord] = []
    texts = [f"text {number}" for number in range(50)]

    async with make_embedder(sim, max_inputs_per_request=10, on_request=records.append) as embedder:
        await embedder.embed(texts)
        snapshot = embedder.metrics()

    assert snapshot.requests == 5
    assert snapshot.succeeded_requests == 5
    assert snapshot.inputs == 50
    assert snapshot.tokens == sim.stats().tokens_accepted
    assert snapshot.estimated_cost_usd == pytest.approx(snapshot.tokens * 0.02 / 1_000_000)
    assert snapshot.latency_p50 is not None
    assert snapshot.active_keys == 1
    assert len(records) == 5
    assert all(record.status == 200 and record.error is None for record in records)
    assert all(record.key == "#0 sk-...abcd" for record in records)


async def test_limiter_statistics_by_key(sim: Simulator) -> None:
    async with make_embedder(sim, api_key=KEYS[:2], requests_per_minute=600) as embedder:
        await embedder.embed(["alpha"])
        statistics = embedder.limiter_statistics()

    assert set(statistics) == {"#0 sk-...abcd", "#1 sk-...efgh"}
    assert sum(entry.issued for entry in statistics.values()) == 1
    assert all(entry.limit_requests == 600 for entry in statistics.values() if entry.issued == 0)


async def test_price_table_override(sim: Simulator) -> None:
    async with make_embedder(sim, prices={"text-embedding-3-small": 1.0}) as embedder:
        await embedder.embed(["alpha"])
        snapshot = embedder.metrics()

    assert snapshot.estimated_cost_usd == pytest.approx(snapshot.tokens / 1_000_000)


# Settings.


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dimensions": 0}, "dimensions must be a whole number >= 1, got 0"),
        ({"dimensions": 4096}, "dimensions=4096 exceeds the 1536 dimensions of text-embedding-3-small"),
        ({"model": "text-embedding-ada-002", "dimensions": 256}, "does not accept dimensions"),
        ({"model": ""}, "model must be a non-empty model name"),
        ({"base_url": "127.0.0.1:8080/v1"}, "base_url must be an http:// or https:// URL"),
        ({"overlong": "cut"}, "overlong must be one of 'truncate', 'split', 'error', got 'cut'"),
        ({"on_invalid": "ignore"}, "on_invalid must be one of 'raise', 'skip'"),
        ({"encoding_format": "binary"}, "encoding_format must be 'base64' or 'float'"),
        ({"vector_type": "list"}, "vector_type must be 'numpy', 'array' or None"),
        ({"min_concurrency": 8, "max_concurrency": 4}, "min_concurrency=8 exceeds max_concurrency=4"),
        ({"max_concurrency": 0}, "max_concurrency must be a whole number >= 1, got 0"),
        ({"coalesce_window": -1}, "coalesce_window must be a finite number of seconds >= 0, got -1"),
        ({"read_timeout": math.inf}, "read_timeout must be a finite number of seconds > 0"),
        ({"max_tokens_per_request": 1000}, "max_tokens_per_request=1000 is below max_tokens_per_input=8192"),
        ({"tokens_per_minute": 5000}, "tokens_per_minute=5000 is below max_tokens_per_input=8192"),
        ({"requests_per_minute": 0}, "requests_per_minute must be a whole number >= 1, got 0"),
        ({"prices": {"text-embedding-3-small": -1}}, "price of 'text-embedding-3-small' must be a finite number"),
        ({"api_key": ["", " "]}, "api_key is empty"),
        ({"api_key": [KEY, KEY]}, "api_key lists the same key twice"),
        ({"retry": 3}, "retry must be a RetryPolicy, got 3"),
        ({"clock": "fast"}, "clock must provide now() and sleep()"),
        ({"azure_endpoint": "http://127.0.0.1:9", "base_url": "http://127.0.0.1:9/v1"}, "not both"),
    ],
)
def test_invalid_settings_raise(options: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"api_key": KEY, "base_url": "http://127.0.0.1:9/v1"}
    settings.update(options)

    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        Embedder(**settings)

    assert isinstance(caught.value, ValueError)


def test_missing_key_names_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    with pytest.raises(ConfigurationError) as raised:
        Embedder(base_url="http://127.0.0.1:9/v1")

    assert "pass the api_key argument or set the OPENAI_API_KEY environment variable" in str(raised.value)
    assert "***" not in str(raised.value)


async def test_settings_from_environment(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", f"{KEYS[0]}, {KEYS[1]}")
    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)

    async with Embedder(clock=sim.clock) as embedder:
        vectors = await embedder.embed(["alpha"])

    assert embedder.settings.api_keys == (KEYS[0], KEYS[1])
    assert embedder.settings.endpoint.url == f"{sim.base_url}/embeddings"
    assert_vector_of(vectors[0], "alpha")


def test_azure_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key-0123456789abcdef")
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-06-01")

    embedder = Embedder(azure_endpoint="http://127.0.0.1:9", azure_deployment="deployment")

    assert embedder.settings.api_keys == ("azure-key-0123456789abcdef",)
    assert embedder.settings.endpoint.url.endswith("/openai/deployments/deployment/embeddings?api-version=2024-06-01")
    assert embedder.settings.endpoint.auth_header == "api-key"


def test_repr_shows_no_key() -> None:
    embedder = Embedder(api_key=KEY, base_url="http://127.0.0.1:9/v1")

    assert KEY not in repr(embedder)
    assert KEY not in repr(embedder.settings)
    assert "keys=1" in repr(embedder)


async def test_embed_after_close_raises(sim: Simulator) -> None:
    embedder = make_embedder(sim)
    async with embedder:
        await embedder.embed(["alpha"])

    with pytest.raises(EmbedderClosedError, match="the embedder is closed"):
        await embedder.embed(["beta"])


async def test_embedder_usable_without_context_manager(sim: Simulator) -> None:
    embedder = make_embedder(sim)
    try:
        vectors = await embedder.embed(["alpha"])
    finally:
        await embedder.aclose()

    assert_vector_of(vectors[0], "alpha")
