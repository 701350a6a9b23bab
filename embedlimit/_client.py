"""One HTTP exchange with the embeddings endpoint of OpenAI, Azure OpenAI or a compatible server.

`EmbeddingsClient.post` sends one request and returns the raw response, or raises a
`TransportError` or `RequestTimeoutError`. `parse_response` turns a response into vectors in
input order, or raises the error the caller acts on. A response whose embeddings do not match
the inputs one to one (a missing, extra or repeated `index`, a wrong dimension, a NaN) raises
`InvalidResponseError`, which is retried: vectors are never zipped to inputs by position.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import orjson

from embedlimit._errors import InvalidResponseError, error_from_exception, error_from_response
from embedlimit._vectors import Vector, VectorDecodeError, VectorType, decode_vectors
from embedlimit._version import __version__

__all__ = [
    "DEFAULT_AZURE_API_VERSION",
    "Embeddings",
    "EmbeddingsClient",
    "Endpoint",
    "RawResponse",
    "azure_endpoint",
    "create_session",
    "encode_body",
    "openai_endpoint",
    "parse_response",
]

logger = logging.getLogger(__name__)

DEFAULT_AZURE_API_VERSION = "2024-10-21"
"""The Azure OpenAI data-plane API version used when none is set (the GA version of October 2024)."""

EncodingFormat = Literal["base64", "float"]


@dataclass(frozen=True)
class Endpoint:
    """The URL of the embeddings endpoint, the request settings, and the header that carries the key.

    `model` is sent in the body, except to an Azure deployment URL, which names the model itself.
    `auth_header` is "Authorization" (sent as `Bearer KEY`) or "api-key" (sent as the bare key).
    """

    url: str
    model: str | None
    auth_header: str = "Authorization"
    dimensions: int | None = None
    encoding_format: EncodingFormat = "base64"
    azure: bool = False

    def auth_value(self, api_key: str) -> str:
        return f"Bearer {api_key}" if self.auth_header.lower() == "authorization" else api_key


def openai_endpoint(
    base_url: str,
    model: str,
    *,
    dimensions: int | None = None,
    encoding_format: EncodingFormat = "base64",
    auth_header: str = "Authorization",
) -> Endpoint:
    """Return the endpoint `{base_url}/embeddings` of OpenAI or a server that speaks its API."""
    url = base_url.rstrip("/") + "/embeddings"
    return Endpoint(url, model, auth_header, dimensions, encoding_format)


def azure_endpoint(
    endpoint: str,
    deployment: str,
    *,
    api_version: str = DEFAULT_AZURE_API_VERSION,
    dimensions: int | None = None,
    encoding_format: EncodingFormat = "base64",
) -> Endpoint:
    """Return the Azure OpenAI URL of a deployment, authenticated by the `api-key` header.

    The URL is `{endpoint}/openai/deployments/{deployment}/embeddings?api-version={api_version}`.
    """
    url = (
        f"{endpoint.rstrip('/')}/openai/deployments/{quote(deployment, safe='')}/embeddings"
        f"?api-version={quote(api_version, safe='')}"
    )
    return Endpoint(url, None, "api-key", dimensions, encoding_format, azure=True)


def encode_body(endpoint: Endpoint, texts: Sequence[str]) -> bytes:
    """Encode the JSON body of one request for `texts`."""
    body: dict[str, Any] = {"input": texts if isinstance(texts, list) else list(texts)}
    if endpoint.model is not None:
        body["model"] = endpoint.model
    body["encoding_format"] = endpoint.encoding_format
    if endpoint.dimensions is not None:
        body["dimensions"] = endpoint.dimensions
    return orjson.dumps(body)


def create_session(
    *, pool_size: int, connect_timeout: float, read_timeout: float, keepalive_timeout: float = 30.0
) -> aiohttp.ClientSession:
    """Create the one HTTP session of an embedder: a bounded pool of keep-alive connections.

    `read_timeout` bounds each wait for data from the socket, so a request whose response
    trickles in slowly can take longer than that as a whole.
    """
    connector = aiohttp.TCPConnector(limit=pool_size, keepalive_timeout=keepalive_timeout, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"User-Agent": f"embedlimit/{__version__}", "Accept": "application/json"},
        raise_for_status=False,
    )


@dataclass(frozen=True)
class RawResponse:
    """The status, headers and body of one response, before any check."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-request-id") or self.headers.get("apim-request-id")


@dataclass(frozen=True)
class Embeddings:
    """The vectors of one successful response, in input order, and the tokens the server counted."""

    vectors: list[Vector]
    total_tokens: int | None


class EmbeddingsClient:
    """Sends embeddings requests through a shared session; it does not own the session."""

    def __init__(self, session: aiohttp.ClientSession, endpoint: Endpoint) -> None:
        self.session = session
        self.endpoint = endpoint

    async def post(self, texts: Sequence[str], api_key: str, *, attempt: int | None = None) -> RawResponse:
        """Send one request and read the whole response, whatever its status.

        Raises TransportError when the connection fails and RequestTimeoutError when a timeout
        expires; neither message contains the key or the headers.
        """
        body = encode_body(self.endpoint, texts)
        headers = {self.endpoint.auth_header: self.endpoint.auth_value(api_key), "Content-Type": "application/json"}
        try:
            async with self.session.post(self.endpoint.url, data=body, headers=headers) as response:
                payload = await response.read()
                return RawResponse(response.status, response.headers, payload)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            error = error_from_exception(exc, attempt=attempt)
            if error is None:  # pragma: no cover - every caught type is classified
                raise
            # The aiohttp exception can carry the request's headers, so it is not chained.
            raise error from None


def parse_response(
    response: RawResponse,
    *,
    expected_count: int,
    dimension: int | None,
    vector_type: VectorType,
    attempt: int | None = None,
    secrets: Sequence[str] = (),
) -> Embeddings:
    """Check one response and return its vectors in input order.

    Raises the error that `error_from_response` classifies for a status outside 2xx, with any of
    `secrets` masked in the server's message, and InvalidResponseError for a 2xx response whose
    body cannot be trusted.
    """
    if not 200 <= response.status < 300:
        raise error_from_response(
            response.status, response.headers, _mask(response.body, secrets), attempt=attempt
        )

    context: dict[str, Any] = {"status": response.status, "request_id": response.request_id, "attempt": attempt}
    try:
        document = orjson.loads(response.body)
    except orjson.JSONDecodeError as error:
        raise InvalidResponseError(f"response body is not valid JSON: {error}", **context) from None

    embeddings = _embeddings_by_index(document, expected_count, context)
    try:
        vectors = decode_vectors(embeddings, dimension, vector_type)
    except VectorDecodeError as error:
        raise InvalidResponseError(f"invalid embedding in response: {error}", **context) from None
    return Embeddings(vectors, _total_tokens(document))


def _embeddings_by_index(document: object, expected_count: int, context: dict[str, Any]) -> list[object]:
    """Return the `embedding` values of `document["data"]`, placed by their `index`."""
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise InvalidResponseError("response has no `data` list of embeddings", **context)
    if len(data) != expected_count:
        raise InvalidResponseError(
            f"response has {len(data)} embeddings for {expected_count} inputs; expected one per input",
            **context,
        )

    placed: list[object] = [None] * expected_count
    seen = [False] * expected_count
    for item in data:
        index = item.get("index") if isinstance(item, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < expected_count:
            raise InvalidResponseError(
                f"response has an embedding with index {index!r}; expected 0 to {expected_count - 1}", **context
            )
        if seen[index]:
            raise InvalidResponseError(f"response has two embeddings with index {index}", **context)
        seen[index] = True
        placed[index] = item.get("embedding")
    return placed


def _total_tokens(document: dict[str, Any]) -> int | None:
    usage = document.get("usage")
    if not isinstance(usage, dict):
        return None
    for name in ("total_tokens", "prompt_tokens"):
        value = usage.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _mask(body: bytes, secrets: Sequence[str]) -> bytes:
    for secret in secrets:
        if secret:
            body = body.replace(secret.encode("utf-8", "replace"), b"***")
    return body

