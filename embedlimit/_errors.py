"""The exceptions embedlimit raises, grouped by what the caller does next.

::

    EmbedLimitError                   status, request_id, attempt, code, should_retry
    ├── RetryableError                retry later; retry_after is the server's hint in seconds
    │   ├── RateLimitError            429 rate_limit_exceeded; limit_type "requests" | "tokens"
    │   ├── ServerError               5xx, 408, 409
    │   ├── TransportError            connection refused or reset, DNS, TLS
    │   ├── RequestTimeoutError       the request's timeout expired
    │   └── InvalidResponseError      malformed JSON, wrong vector count or dimension, NaN
    ├── FatalError                    stop the run
    │   ├── AuthenticationError       401, 403
    │   └── QuotaExceededError        429 insufficient_quota and the billing codes
    ├── InputError                    fix this input; input_index names it when known
    │   ├── InvalidInputError         400 about one input: empty, too long, invalid
    │   └── CapacityError             an amount larger than a bucket or request can ever hold
    └── ConfigurationError            invalid settings, raised at construction

`CapacityError` and `ConfigurationError` are also `ValueError`s. `error_from_response` turns an
HTTP error response into one of these, and `error_from_exception` does the same for a failure
of the transport. Messages and `repr()` never contain an API key or an Authorization header: the
errors keep no headers, and key-like strings in a server's message are masked.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Mapping
from typing import Any, Literal

import aiohttp
import orjson

from embedlimit._headers import parse_rate_limit_headers

__all__ = [
    "QUOTA_CODES",
    "AuthenticationError",
    "CapacityError",
    "ConfigurationError",
    "EmbedLimitError",
    "FatalError",
    "InputError",
    "InvalidInputError",
    "InvalidResponseError",
    "QuotaExceededError",
    "RateLimitError",
    "RequestTimeoutError",
    "RetryableError",
    "ServerError",
    "TransportError",
    "error_from_exception",
    "error_from_response",
]

LimitType = Literal["requests", "tokens"]

QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        "billing_hard_limit_reached",
        "credit_balance_exhausted",
        "organization_usage_limit_exceeded",
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "access_terminated",
    }
)
"""Error codes and types after which retrying does not restore access (OpenAI help center, 2026)."""

_MAX_SERVER_MESSAGE = 500

_SECRET_PATTERNS = (
    (re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+"), r"\1 ***"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-*]{4,}"), "sk-***"),
    (re.compile(r"(?i)\b(api[-_ ]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"), r"\1***"),
)


def redact_secrets(text: str) -> str:
    """Mask bearer tokens, `sk-` keys and `api-key=` values in `text`."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class EmbedLimitError(Exception):
    """Base of every embedlimit error; the attributes are None when unknown.

    `status` is the HTTP status, `request_id` the server's `x-request-id`, `attempt` the attempt
    (from 1) that failed, `code` the server's error code, and `should_retry` the server's
    `x-should-retry` header when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        attempt: int | None = None,
        code: str | None = None,
        should_retry: bool | None = None,
    ) -> None:
        self.message = redact_secrets(message)
        super().__init__(self.message)
        self.status = status
        self.request_id = request_id
        self.attempt = attempt
        self.code = code
        self.should_retry = should_retry

    def _context(self) -> dict[str, object]:
        return {
            "status": self.status,
            "code": self.code,
            "request_id": self.request_id,
            "attempt": self.attempt,
        }

    def __str__(self) -> str:
        details = ", ".join(f"{name} {value}" for name, value in self._context().items() if value is not None)
        return f"{self.message} ({details})" if details else self.message

    def __repr__(self) -> str:
        context = self._context().items()
        fields = "".join(f", {name}={value!r}" for name, value in context if value is not None)
        return f"{type(self).__name__}({self.message!r}{fields})"


class RetryableError(EmbedLimitError):
    """A failure that may pass on a later attempt; `retry_after` is the server's hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after

    def _context(self) -> dict[str, object]:
        return {**super()._context(), "retry_after": self.retry_after}


class RateLimitError(RetryableError):
    """HTTP 429 for a rate limit; `limit_type` names the bucket that the server reported as empty.

    `limit`, `used` and `requested` are the numbers from OpenAI's message when it gives them.
    """

    def __init__(
        self,
        message: str,
        *,
        limit_type: LimitType | None = None,
        limit: int | None = None,
        used: int | None = None,
        requested: int | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message, **context)
        self.limit_type = limit_type
        self.limit = limit
        self.used = used
        self.requested = requested

    def _context(self) -> dict[str, object]:
        numbers = {"limit": self.limit, "used": self.used, "requested": self.requested}
        return {**super()._context(), "limit_type": self.limit_type, **numbers}


class ServerError(RetryableError):
    """HTTP 5xx, 408 (request timeout) or 409 (conflict) from the server."""


class TransportError(RetryableError):
    """The request did not complete: connection refused or reset, DNS or TLS failure."""


class RequestTimeoutError(RetryableError):
    """The request's own timeout expired before the response arrived."""


class InvalidResponseError(RetryableError):
    """A response that cannot be used: malformed JSON, wrong vector count or dimension, NaN."""


class FatalError(EmbedLimitError):
    """A failure that no retry can fix; the run stops."""


class AuthenticationError(FatalError):
    """HTTP 401 or 403: the API key is missing, invalid or not allowed to use this model."""


class QuotaExceededError(FatalError):
    """HTTP 429 with `insufficient_quota` or a billing code: retrying does not restore access."""


class InputError(EmbedLimitError):
    """A request that fails because of its input; `input_index` names the input when known."""

    def __init__(self, message: str, *, input_index: int | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.input_index = input_index

    def _context(self) -> dict[str, object]:
        return {**super()._context(), "input_index": self.input_index}


class InvalidInputError(InputError):
    """HTTP 400 about one input: empty, longer than the model accepts, or otherwise invalid."""


class CapacityError(InputError, ValueError):
    """An amount larger than a bucket or a request can ever hold, so waiting cannot help.

    `amount` is what was asked for and `capacity` the most that can ever be held.
    """

    def __init__(
        self, message: str, *, amount: float | None = None, capacity: float | None = None, **context: Any
    ) -> None:
        super().__init__(message, **context)
        self.amount = amount
        self.capacity = capacity

    def _context(self) -> dict[str, object]:
        return {**super()._context(), "amount": self.amount, "capacity": self.capacity}


class ConfigurationError(EmbedLimitError, ValueError):
    """An invalid setting, raised when the object that takes it is constructed."""


# Classifying HTTP responses.

_INPUT_INDEX_PATTERNS = (
    re.compile(r"\binput\[(\d+)\]"),
    re.compile(r"\bindex\s+(\d+)", re.IGNORECASE),
)
_REQUEST_CAP_RE = re.compile(r"requested\s+(\d+)\s+tokens?,\s*max\s+(\d+)\s+tokens?\s+per\s+request", re.I)
_RATE_NUMBERS_RE = re.compile(r"limit\s+(\d+),\s*used\s+(\d+),\s*requested\s+(\d+)", re.IGNORECASE)
_QUOTA_MESSAGE_RE = re.compile(r"exceeded your current quota", re.IGNORECASE)
# OpenAI's 429 for one request above the whole per-minute limit: "Request too large for <model>
# ... on tokens per min (TPM): Limit 30000, Requested 36000."
_TOO_LARGE_RE = re.compile(r"request too large.*?limit\s+(\d+),\s*requested\s+(\d+)", re.IGNORECASE | re.DOTALL)


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str | Mapping[str, Any] | None,
    *,
    attempt: int | None = None,
) -> EmbedLimitError:
    """Classify an HTTP error response into the error the caller should act on.

    | status or code                          | error                  | caller does        |
    |-----------------------------------------|------------------------|--------------------|
    | code or type in `QUOTA_CODES`, any 4xx  | QuotaExceededError     | stop the run       |
    | 401, 403                                | AuthenticationError    | stop the run       |
    | 429 "Request too large"                 | CapacityError          | split the request  |
    | 429                                     | RateLimitError         | pause, then retry  |
    | 408, 409, 5xx                           | ServerError            | retry with backoff |
    | 400, 422 naming a per-request cap       | CapacityError          | split the request  |
    | 400, 422                                | InvalidInputError      | fix or drop input  |
    | 413                                     | CapacityError          | split the request  |
    | other, with `x-should-retry: true`      | ServerError            | retry with backoff |
    | other                                   | FatalError             | stop the run       |
    """
    lowered = {str(key).lower(): value for key, value in headers.items()}
    error = _error_object(body)
    message = _server_message(error, body, status)
    code = _first_text(error.get("code"), error.get("type"))
    context: dict[str, Any] = {
        "status": status,
        "request_id": lowered.get("x-request-id") or lowered.get("apim-request-id"),
        "attempt": attempt,
        "code": code,
        "should_retry": _should_retry(lowered.get("x-should-retry")),
    }
    retry_after = parse_rate_limit_headers(lowered, body).retry_after

    if _is_quota(error, message) and 400 <= status < 500:
        return QuotaExceededError(
            f"quota exceeded: {message} Retrying does not restore access; check the plan and billing "
            "details of the account, then restart the run.",
            **context,
        )
    if status in (401, 403):
        return AuthenticationError(
            f"authentication failed: {message} Check the API key and its access to this model.", **context
        )
    too_large = _TOO_LARGE_RE.search(message) if status == 429 else None
    if too_large is not None:
        capacity, amount = (int(value) for value in too_large.groups())
        return CapacityError(
            f"request too large: {message} Split the inputs over smaller requests.",
            amount=amount,
            capacity=capacity,
            **context,
        )
    if status == 429:
        return _rate_limit_error(error, message, retry_after, context)
    if status in (408, 409) or 500 <= status < 600:
        return ServerError(f"server error: {message}", retry_after=retry_after, **context)
    if status in (400, 413, 422):
        return _input_error(error, message, context)
    if context["should_retry"]:
        return ServerError(f"unexpected response: {message}", retry_after=retry_after, **context)
    return FatalError(f"unexpected response: {message} Check the base URL and the model name.", **context)


def error_from_exception(exc: BaseException, *, attempt: int | None = None) -> EmbedLimitError | None:
    """Classify a transport failure, or return None when `exc` is not a transport failure."""
    if isinstance(exc, EmbedLimitError):
        return exc
    description = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | aiohttp.ServerTimeoutError):
        return RequestTimeoutError(f"request timed out: {description}", attempt=attempt)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ContentTypeError):
        return InvalidResponseError(f"invalid response: {description}", attempt=attempt)
    if isinstance(exc, aiohttp.ClientConnectionError | ssl.SSLError | OSError):
        return TransportError(f"connection failed: {description}", attempt=attempt)
    return None


def _rate_limit_error(
    error: Mapping[str, Any], message: str, retry_after: float | None, context: dict[str, Any]
) -> RateLimitError:
    numbers = _RATE_NUMBERS_RE.search(message)
    limit, used, requested = (int(value) for value in numbers.groups()) if numbers else (None, None, None)
    return RateLimitError(
        f"rate limit exceeded: {message}",
        retry_after=retry_after,
        limit_type=_limit_type(error, message),
        limit=limit,
        used=used,
        requested=requested,
        **context,
    )


def _input_error(error: Mapping[str, Any], message: str, context: dict[str, Any]) -> InputError:
    cap = _REQUEST_CAP_RE.search(message)
    if cap is not None or context["status"] == 413:
        amount, capacity = (int(value) for value in cap.groups()) if cap else (None, None)
        return CapacityError(
            f"request too large: {message} Split the inputs over smaller requests.",
            amount=amount,
            capacity=capacity,
            **context,
        )
    return InvalidInputError(
        f"invalid input: {message} Fix or drop the input and send it again.",
        input_index=_input_index(error, message),
        **context,
    )


def _limit_type(error: Mapping[str, Any], message: str) -> LimitType | None:
    kind = error.get("type")
    if kind in ("requests", "tokens"):
        return "tokens" if kind == "tokens" else "requests"
    lowered = message.lower()
    if "tokens per min" in lowered or "token rate limit" in lowered or "(tpm)" in lowered:
        return "tokens"
    if "requests per min" in lowered or "call rate limit" in lowered or "(rpm)" in lowered:
        return "requests"
    return None


def _is_quota(error: Mapping[str, Any], message: str) -> bool:
    codes = {str(error.get("code")), str(error.get("type"))}
    return bool(codes & QUOTA_CODES) or bool(_QUOTA_MESSAGE_RE.search(message))


def _input_index(error: Mapping[str, Any], message: str) -> int | None:
    for text in (str(error.get("param") or ""), message):
        for pattern in _INPUT_INDEX_PATTERNS:
            match = pattern.search(text)
            if match is not None:
                return int(match.group(1))
    return None


def _should_retry(raw: str | None) -> bool | None:
    if raw is None:
        return None
    value = raw.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def _error_object(body: object) -> Mapping[str, Any]:
    """Return the `error` object of an OpenAI-style JSON body, or an empty mapping."""
    parsed: object = body
    if isinstance(body, bytes | bytearray | str):
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return {}
    if not isinstance(parsed, Mapping):
        return {}
    error = parsed.get("error")
    if isinstance(error, Mapping):
        return error
    if isinstance(error, str):
        return {"message": error}
    return parsed if "message" in parsed else {}


def _server_message(error: Mapping[str, Any], body: object, status: int) -> str:
    message = error.get("message")
    if not isinstance(message, str) or not message.strip():
        message = _body_text(body)
    message = " ".join(message.split()) or f"HTTP {status} without a message."
    if len(message) > _MAX_SERVER_MESSAGE:
        message = message[: _MAX_SERVER_MESSAGE - 3] + "..."
    return message if message.endswith((".", "!", "?")) else message + "."


def _body_text(body: object) -> str:
    if isinstance(body, bytes | bytearray):
        return bytes(body).decode("utf-8", "replace")
    return body if isinstance(body, str) else ""


def _first_text(*values: object) -> str | None:
    for value in values:
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None
