"""Tests for the exception tree and the classification of HTTP error responses."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import orjson
import pytest

from embedlimit._errors import (
    QUOTA_CODES,
    AuthenticationError,
    CapacityError,
    ConfigurationError,
    EmbedLimitError,
    FatalError,
    InputError,
    InvalidInputError,
    InvalidResponseError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    RetryableError,
    ServerError,
    TransportError,
    error_from_exception,
    error_from_response,
)

FAKE_KEY = "sk-proj-FAKEKEYfakekey0123456789abcdefXYZ"


def openai_body(
    message: str, *, code: str | None = None, kind: str | None = None, param: str | None = None
) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


def test_tree_shape() -> None:
    for retryable in (RateLimitError, ServerError, TransportError, RequestTimeoutError, InvalidResponseError):
        assert issubclass(retryable, RetryableError)
    for fatal in (AuthenticationError, QuotaExceededError):
        assert issubclass(fatal, FatalError)
    for input_error in (InvalidInputError, CapacityError):
        assert issubclass(input_error, InputError)
    for group in (RetryableError, FatalError, InputError, ConfigurationError):
        assert issubclass(group, EmbedLimitError)
    assert issubclass(CapacityError, ValueError)
    assert issubclass(ConfigurationError, ValueError)
    assert not issubclass(RetryableError, FatalError)


def test_base_attributes_default_none() -> None:
    error = EmbedLimitError("failed")
    assert error.status is None
    assert error.request_id is None
    assert error.attempt is None
    assert error.code is None
    assert str(error) == "failed"


def test_str_and_repr_carry_context() -> None:
    error = RateLimitError("rate limit exceeded", status=429, request_id="req_1", attempt=2, retry_after=1.5)
    assert str(error) == "rate limit exceeded (status 429, request_id req_1, attempt 2, retry_after 1.5)"
    assert repr(error) == (
        "RateLimitError('rate limit exceeded', status=429, request_id='req_1', attempt=2, retry_after=1.5)"
    )


def test_capacity_error_numbers() -> None:
    error = CapacityError("too large", amount=9000, capacity=8192)
    assert error.amount == 9000
    assert error.capacity == 8192
    assert "9000" in str(error)
    assert "8192" in str(error)


def test_insufficient_quota_is_fatal() -> None:
    body = openai_body(
        "You exceeded your current quota, please check your plan and billing details.",
        code="insufficient_quota",
        kind="insufficient_quota",
    )
    error = error_from_response(429, {"x-request-id": "req_q"}, body, attempt=1)
    assert isinstance(error, QuotaExceededError)
    assert isinstance(error, FatalError)
    assert not isinstance(error, RetryableError)
    assert error.code == "insufficient_quota"
    assert error.request_id == "req_q"
    assert error.status == 429
    assert "billing" in str(error)


@pytest.mark.parametrize("code", sorted(QUOTA_CODES))
def test_billing_codes_are_quota(code: str) -> None:
    error = error_from_response(429, {}, openai_body("Access denied.", code=code, kind="insufficient_quota"))
    assert isinstance(error, QuotaExceededError)
    assert error.code == code


def test_quota_message_without_code_is_quota() -> None:
    body = openai_body("You exceeded your current quota, please check your plan and billing details.")
    assert isinstance(error_from_response(429, {}, body), QuotaExceededError)


def test_rate_limit_tokens_with_numbers() -> None:
    message = (
        "Rate limit reached for text-embedding-3-small in organization org-x on tokens per min (TPM): "
        "Limit 1000000, Used 999000, Requested 5000. Please try again in 4.585s."
    )
    body = openai_body(message, code="rate_limit_exceeded", kind="tokens")
    error = error_from_response(429, {"x-request-id": "req_r"}, body, attempt=3)
    assert isinstance(error, RateLimitError)
    assert error.limit_type == "tokens"
    assert error.retry_after == pytest.approx(4.585)
    assert error.limit == 1_000_000
    assert error.used == 999_000
    assert error.requested == 5000
    assert error.attempt == 3
    assert error.code == "rate_limit_exceeded"


def test_rate_limit_requests_type() -> None:
    message = "Rate limit reached on requests per min (RPM)."
    body = openai_body(message, code="rate_limit_exceeded", kind="requests")
    error = error_from_response(429, {"retry-after-ms": "250"}, body)
    assert isinstance(error, RateLimitError)
    assert error.limit_type == "requests"
    assert error.retry_after == 0.25


def test_rate_limit_azure_body() -> None:
    body = (
        b'{"error":{"code":"429","message":"Requests to the Embeddings_Create Operation under Azure OpenAI '
        b'API version 2024-02-01 have exceeded token rate limit of your current OpenAI S0 pricing tier. '
        b'Please retry after 6 seconds."}}'
    )
    error = error_from_response(429, {"apim-request-id": "apim-1"}, body)
    assert isinstance(error, RateLimitError)
    assert error.limit_type == "tokens"
    assert error.retry_after == 6.0
    assert error.code == "429"
    assert error.request_id == "apim-1"


def test_rate_limit_unknown_body() -> None:
    error = error_from_response(429, {"Retry-After": "3"}, b"<html>Too Many Requests</html>")
    assert isinstance(error, RateLimitError)
    assert error.limit_type is None
    assert error.retry_after == 3.0


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503, 504, 529])
def test_server_statuses_retryable(status: int) -> None:
    error = error_from_response(status, {}, b"")
    assert isinstance(error, ServerError)
    assert error.status == status
    assert f"HTTP {status}" in str(error)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_statuses_fatal(status: int) -> None:
    body = openai_body("Incorrect API key provided.", code="invalid_api_key")
    assert isinstance(error_from_response(status, {}, body), AuthenticationError)


@pytest.mark.parametrize(
    ("message", "param", "index"),
    [
        ("'$.input[3]' is invalid. Please check the API reference.", None, 3),
        ("Invalid value for input[12]: empty string.", None, 12),
        ("The input at index 7 is empty.", None, 7),
        ("Invalid input.", "input[5]", 5),
        ("This model's maximum context length is 8192 tokens.", None, None),
    ],
)
def test_bad_request_input_index(message: str, param: str | None, index: int | None) -> None:
    error = error_from_response(400, {}, openai_body(message, kind="invalid_request_error", param=param))
    assert isinstance(error, InvalidInputError)
    assert error.input_index == index


def test_request_token_cap_is_capacity() -> None:
    message = "Requested 375703 tokens, max 300000 tokens per request"
    body = openai_body(message, code="max_tokens_per_request")
    error = error_from_response(400, {}, body)
    assert isinstance(error, CapacityError)
    assert error.amount == 375_703
    assert error.capacity == 300_000


def test_429_request_too_large_is_capacity() -> None:
    message = (
        "Request too large for text-embedding-3-small in organization org-x on tokens per min (TPM): "
        "Limit 30000, Requested 36000. The input or output tokens must be reduced in order to run successfully."
    )
    error = error_from_response(429, {}, openai_body(message, code="rate_limit_exceeded", kind="tokens"))
    assert isinstance(error, CapacityError)
    assert error.amount == 36_000
    assert error.capacity == 30_000


def test_payload_too_large_is_capacity() -> None:
    assert isinstance(error_from_response(413, {}, b"Request Entity Too Large"), CapacityError)


def test_unknown_status_fatal_unless_should_retry() -> None:
    assert type(error_from_response(404, {}, openai_body("The model does not exist."))) is FatalError
    error = error_from_response(404, {"X-Should-Retry": "true"}, b"")
    assert isinstance(error, ServerError)
    assert error.should_retry is True


def test_should_retry_false_recorded() -> None:
    error = error_from_response(503, {"x-should-retry": "false"}, b"")
    assert isinstance(error, ServerError)
    assert error.should_retry is False


def test_plain_text_and_string_error_bodies() -> None:
    assert "Bad Gateway" in str(error_from_response(502, {}, "Bad Gateway"))
    assert "went wrong" in str(error_from_response(500, {}, b'{"error": "Something went wrong"}'))


def test_long_message_truncated() -> None:
    error = error_from_response(500, {}, openai_body("x" * 5000))
    assert len(error.message) < 700


def test_key_never_in_str_or_repr() -> None:
    headers = {"Authorization": f"Bearer {FAKE_KEY}", "api-key": FAKE_KEY, "x-request-id": "req_k"}
    bodies = [
        openai_body(f"Incorrect API key provided: {FAKE_KEY}.", code="invalid_api_key"),
        openai_body(f"Header was Authorization: Bearer {FAKE_KEY}"),
        f"api-key={FAKE_KEY}".encode(),
        f'{{"api_key": "{FAKE_KEY}"}}'.encode(),
    ]
    for status in (400, 401, 429, 500):
        for body in bodies:
            error = error_from_response(status, headers, body)
            assert "FAKEKEY" not in str(error)
            assert "FAKEKEY" not in repr(error)
            assert "FAKEKEY" not in str(error.args)


def test_key_masked_in_direct_message() -> None:
    error = TransportError(f"failed with Bearer {FAKE_KEY}")
    assert "FAKEKEY" not in str(error)
    assert "FAKEKEY" not in repr(error)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (asyncio.TimeoutError(), RequestTimeoutError),
        (TimeoutError("read"), RequestTimeoutError),
        (ConnectionResetError("reset by peer"), TransportError),
        (ConnectionRefusedError(), TransportError),
        (aiohttp.ServerDisconnectedError(), TransportError),
        (ssl.SSLError("bad handshake"), TransportError),
        (aiohttp.ClientPayloadError("truncated"), InvalidResponseError),
    ],
)
def test_error_from_exception(exc: BaseException, expected: type[EmbedLimitError]) -> None:
    error = error_from_exception(exc, attempt=2)
    assert isinstance(error, expected)
    assert error.attempt == 2


def test_error_from_exception_unknown() -> None:
    assert error_from_exception(KeyError("x")) is None
