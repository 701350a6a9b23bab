"""The HTTP exchange: request bodies and URLs, response checks, decoding and error classification."""

from __future__ import annotations

import base64
import socket
import struct
from collections.abc import AsyncIterator, Sequence

import aiohttp
import numpy
import orjson
import pytest

from embedlimit._client import (
    EmbeddingsClient,
    Endpoint,
    RawResponse,
    azure_endpoint,
    create_session,
    encode_body,
    openai_endpoint,
    parse_response,
)
from embedlimit._errors import (
    AuthenticationError,
    InvalidInputError,
    InvalidResponseError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TransportError,
)
from embedlimit.testing import Simulator, expected_vector

pytestmark = pytest.mark.timeout(30)

KEY = "sk-test-client-0123456789abcdef"


def vector_bytes(values: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def response(document: object, status: int = 200, headers: dict[str, str] | None = None) -> RawResponse:
    return RawResponse(status, headers or {"x-request-id": "req-1"}, orjson.dumps(document))


def embeddings_document(vectors: list[list[float]], order: list[int] | None = None) -> dict[str, object]:
    indices = order if order is not None else list(range(len(vectors)))
    data = [{"object": "embedding", "index": index, "embedding": vector_bytes(vectors[index])} for index in indices]
    return {"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": 7, "total_tokens": 7}}


def parse(raw: RawResponse, count: int, dimension: int | None = 2) -> list[list[float]]:
    embeddings = parse_response(raw, expected_count=count, dimension=dimension, vector_type="numpy", attempt=1)
    return [list(vector) for vector in embeddings.vectors]


# Request bodies and endpoints.


def test_openai_endpoint_url_and_auth() -> None:
    endpoint = openai_endpoint("http://127.0.0.1:9/v1/", "text-embedding-3-small")

    assert endpoint.url == "http://127.0.0.1:9/v1/embeddings"
    assert endpoint.auth_header == "Authorization"
    assert endpoint.auth_value(KEY) == f"Bearer {KEY}"


def test_azure_endpoint_url_and_auth() -> None:
    endpoint = azure_endpoint("http://127.0.0.1:9/", "my deployment", api_version="2024-02-01")

    assert endpoint.url == "http://127.0.0.1:9/openai/deployments/my%20deployment/embeddings?api-version=2024-02-01"
    assert endpoint.auth_header == "api-key"
    assert endpoint.auth_value(KEY) == KEY
    assert endpoint.model is None
    assert endpoint.azure


def test_encode_body_openai() -> None:
    endpoint = openai_endpoint("http://127.0.0.1:9/v1", "text-embedding-3-small", dimensions=256)

    body = orjson.loads(encode_body(endpoint, ("a", "b")))

    assert body == {
        "input": ["a", "b"],
        "model": "text-embedding-3-small",
        "encoding_format": "base64",
        "dimensions": 256,
    }


def test_encode_body_azure_omits_model() -> None:
    endpoint = azure_endpoint("http://127.0.0.1:9", "deployment", encoding_format="float")

    body = orjson.loads(encode_body(endpoint, ["a"]))

    assert body == {"input": ["a"], "encoding_format": "float"}


# Response checks.


def test_parse_restores_order_from_index() -> None:
    vectors = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]

    parsed = parse(response(embeddings_document(vectors, order=[2, 0, 1])), 3)

    assert parsed == vectors


def test_parse_returns_total_tokens() -> None:
    raw = response(embeddings_document([[1.0, 0.0]]))

    embeddings = parse_response(raw, expected_count=1, dimension=2, vector_type="array")

    assert embeddings.total_tokens == 7


def test_parse_accepts_float_lists() -> None:
    document = {"data": [{"index": 0, "embedding": [0.25, -0.5]}], "usage": {"total_tokens": 1}}

    assert parse(response(document), 1) == [[0.25, -0.5]]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (embeddings_document([[1.0, 0.0]]), "1 embeddings for 2 inputs"),
        (embeddings_document([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), "3 embeddings for 2 inputs"),
        (embeddings_document([[1.0, 0.0], [0.0, 1.0]], order=[0, 0]), "two embeddings with index 0"),
        (embeddings_document([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], order=[0, 2]), "index 2; expected 0 to 1"),
        ({"data": [{"embedding": "AAAA"}, {"index": 1}]}, "index None"),
        ({"data": [{"index": True, "embedding": "AAAA"}, {"index": 1}]}, "index True"),
        ({"object": "list"}, "no `data` list"),
        ([1, 2], "no `data` list"),
    ],
)
def test_parse_rejects_mismatched_data(document: object, message: str) -> None:
    with pytest.raises(InvalidResponseError, match=message) as caught:
        parse(response(document), 2)

    assert caught.value.request_id == "req-1"
    assert caught.value.attempt == 1


def test_parse_rejects_nan_vector() -> None:
    document = embeddings_document([[1.0, 0.0], [float("nan"), 0.0]])

    with pytest.raises(InvalidResponseError, match="embedding 1 contains NaN"):
        parse(response(document), 2)


def test_parse_rejects_null_vector() -> None:
    document = {"data": [{"index": 0, "embedding": None}]}

    with pytest.raises(InvalidResponseError, match="embedding 0 is of type NoneType"):
        parse(response(document), 1)


def test_parse_rejects_wrong_dimension() -> None:
    with pytest.raises(InvalidResponseError, match="has 2 dimensions; expected 3"):
        parse(response(embeddings_document([[1.0, 0.0]])), 1, dimension=3)


def test_parse_rejects_cut_json() -> None:
    raw = RawResponse(200, {}, orjson.dumps(embeddings_document([[1.0, 0.0]]))[:-10])

    with pytest.raises(InvalidResponseError, match="not valid JSON"):
        parse(raw, 1)


def error_body(message: str, error_type: str, code: str | None) -> dict[str, object]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (429, error_body("Rate limit reached on tokens per min (TPM)", "tokens", "rate_limit_exceeded"),
         RateLimitError),
        (429, error_body("You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
         QuotaExceededError),
        (401, error_body("Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
         AuthenticationError),
        (500, error_body("The server had an error", "server_error", None), ServerError),
        (400, error_body("'$.input' is invalid: input[3] is empty", "invalid_request_error", None), InvalidInputError),
    ],
)
def test_parse_classifies_error_status(status: int, body: object, error_class: type[Exception]) -> None:
    with pytest.raises(error_class) as caught:
        parse(response(body, status=status), 5)

    assert caught.value.status == status  # type: ignore[attr-defined]


def test_parse_names_rejected_input_index() -> None:
    body = error_body("'$.input' is invalid: input[3] is empty", "invalid_request_error", None)

    with pytest.raises(InvalidInputError) as caught:
        parse(response(body, status=400), 5)

    assert caught.value.input_index == 3


def test_parse_masks_key_in_error_message() -> None:
    azure_style_key = "0123456789abcdef0123456789abcdef"
    body = error_body(f"Access denied for key {azure_style_key}.", "invalid_request_error", None)

    with pytest.raises(AuthenticationError) as caught:
        parse_response(
            response(body, status=401),
            expected_count=1,
            dimension=2,
            vector_type="numpy",
            secrets=[azure_style_key],
        )

    assert azure_style_key not in str(caught.value)
    assert azure_style_key not in repr(caught.value)


# The HTTP exchange.


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(keys=[KEY], rpm=None, tpm=None, honor_encoding_format=True) as sim:
        yield sim


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    session = create_session(pool_size=4, connect_timeout=2.0, read_timeout=0.5)
    try:
        yield session
    finally:
        await session.close()


async def test_post_returns_vectors_from_simulator(simulator: Simulator, session: aiohttp.ClientSession) -> None:
    client = EmbeddingsClient(session, openai_endpoint(simulator.base_url, "text-embedding-3-small"))

    raw = await client.post(["alpha", "beta"], KEY, attempt=1)
    embeddings = parse_response(raw, expected_count=2, dimension=1536, vector_type="numpy")

    assert raw.status == 200
    assert raw.request_id is not None
    assert numpy.allclose(embeddings.vectors[0], expected_vector("alpha"))
    assert numpy.allclose(embeddings.vectors[1], expected_vector("beta"))


async def test_post_to_azure_path(simulator: Simulator, session: aiohttp.ClientSession) -> None:
    endpoint = azure_endpoint(simulator.azure_endpoint, "text-embedding-3-small", api_version="2024-02-01")
    client = EmbeddingsClient(session, endpoint)

    raw = await client.post(["alpha"], KEY, attempt=1)
    embeddings = parse_response(raw, expected_count=1, dimension=1536, vector_type="array")

    assert raw.status == 200
    assert list(embeddings.vectors[0]) == pytest.approx(expected_vector("alpha"))


async def test_post_float_format(simulator: Simulator, session: aiohttp.ClientSession) -> None:
    endpoint = openai_endpoint(simulator.base_url, "text-embedding-3-small", encoding_format="float", dimensions=8)
    client = EmbeddingsClient(session, endpoint)

    raw = await client.post(["alpha"], KEY)
    document = orjson.loads(raw.body)
    embeddings = parse_response(raw, expected_count=1, dimension=8, vector_type="numpy")

    assert isinstance(document["data"][0]["embedding"], list)
    assert numpy.allclose(embeddings.vectors[0], expected_vector("alpha", dimensions=8))


async def test_post_with_wrong_key_is_authentication_error(
    simulator: Simulator, session: aiohttp.ClientSession
) -> None:
    client = EmbeddingsClient(session, openai_endpoint(simulator.base_url, "text-embedding-3-small"))
    wrong_key = "sk-wrong-key-0123456789abcdef"

    raw = await client.post(["alpha"], wrong_key)
    with pytest.raises(AuthenticationError) as caught:
        parse_response(raw, expected_count=1, dimension=None, vector_type="numpy", secrets=[wrong_key])

    assert caught.value.status == 401
    assert wrong_key not in str(caught.value)


async def test_post_refused_connection_is_transport_error(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = EmbeddingsClient(session, Endpoint(f"http://127.0.0.1:{port}/v1/embeddings", "m"))

    with pytest.raises(TransportError) as caught:
        await client.post(["alpha"], KEY, attempt=2)

    assert caught.value.attempt == 2
    assert caught.value.__cause__ is None
    assert KEY not in repr(caught.value)


async def test_post_hang_is_timeout_error(simulator: Simulator, session: aiohttp.ClientSession) -> None:
    client = EmbeddingsClient(session, openai_endpoint(simulator.base_url, "text-embedding-3-small"))
    simulator.faults.enqueue("hang")

    with pytest.raises(RequestTimeoutError):
        await client.post(["alpha"], KEY, attempt=1)


async def test_post_connection_reset_is_transport_error(
    simulator: Simulator, session: aiohttp.ClientSession
) -> None:
    client = EmbeddingsClient(session, openai_endpoint(simulator.base_url, "text-embedding-3-small"))
    simulator.faults.enqueue("connection_reset")

    with pytest.raises(TransportError):
        await client.post(["alpha"], KEY, attempt=1)
