"""Response headers and bodies: rate-limit headers, 429 and auth errors, the embeddings list.

Header names and formats follow OpenAI's rate-limits guide (`x-ratelimit-limit-requests`,
`-tokens`, `x-ratelimit-remaining-*`, `x-ratelimit-reset-*` as durations such as `6m0s`), and the
429 messages follow those users quote from the live API. Azure-style resets are whole seconds
and its 429 body has `"code": "429"`, as Microsoft's Azure OpenAI quota docs and user reports show.
"""

from __future__ import annotations

import base64 as base64_codec
import math
import struct
from typing import Any

import orjson

from embedlimit.testing._durations import ceil_milliseconds, ceil_seconds, format_duration
from embedlimit.testing._faults import FaultKind, Faults
from embedlimit.testing._limits import LimitDecision, LimitSnapshot
from embedlimit.testing._validation import ApiError, EmbeddingRequest
from embedlimit.testing._vectors import VectorBatch

__all__ = [
    "EmbeddingPayload",
    "auth_error",
    "azure_rate_limit_body",
    "build_embedding_payload",
    "quota_error",
    "rate_limit_error",
    "rate_limit_headers",
    "retry_after_headers",
]

RATE_LIMITS_PAGE = "https://platform.openai.com/account/rate-limits"
_NAN_MARKER = "embedlimit-simulator-nan-vector"


def rate_limit_headers(snapshot: LimitSnapshot, *, azure_style: bool) -> dict[str, str]:
    """Return the `x-ratelimit-*` headers for the limits that are configured."""
    headers: dict[str, str] = {}
    pairs = (
        ("requests", snapshot.limit_requests, snapshot.remaining_requests, snapshot.reset_requests),
        ("tokens", snapshot.limit_tokens, snapshot.remaining_tokens, snapshot.reset_tokens),
    )
    for name, limit, remaining, reset in pairs:
        if limit is None or remaining is None or reset is None:
            continue
        headers[f"x-ratelimit-limit-{name}"] = str(limit)
        headers[f"x-ratelimit-remaining-{name}"] = str(remaining)
        headers[f"x-ratelimit-reset-{name}"] = str(ceil_seconds(reset)) if azure_style else format_duration(reset)
    return headers


def retry_after_headers(delay: float) -> dict[str, str]:
    """Return `retry-after` in whole seconds (rounded up) and `retry-after-ms`."""
    return {"retry-after": str(ceil_seconds(delay)), "retry-after-ms": str(ceil_milliseconds(delay))}


def rate_limit_error(decision: LimitDecision, model: str, organization: str) -> ApiError:
    """Return OpenAI's 429 `rate_limit_exceeded` error for a rejected request."""
    assert decision.limit_type is not None
    unit = "requests per min (RPM)" if decision.limit_type == "requests" else "tokens per min (TPM)"
    place = f"for {model} in organization {organization} on {unit}"
    if decision.too_large:
        # Observed on chat models: a request above the whole TPM limit gets this 429, no retry hint.
        message = (
            f"Request too large {place}: Limit {decision.limit}, Requested {decision.requested}. "
            f"The input or output tokens must be reduced in order to run successfully. "
            f"Visit {RATE_LIMITS_PAGE} to learn more."
        )
    else:
        message = (
            f"Rate limit reached {place}: Limit {decision.limit}, Used {decision.used}, "
            f"Requested {decision.requested}. Please try again in {format_duration(decision.delay)}. "
            f"Visit {RATE_LIMITS_PAGE} to learn more."
        )
    return ApiError(429, message, error_type=decision.limit_type, code="rate_limit_exceeded")


def azure_rate_limit_body(decision: LimitDecision, api_version: str) -> dict[str, Any]:
    """Return Azure OpenAI's 429 body, whose message gives the delay in whole seconds."""
    kind = "call rate limit" if decision.limit_type == "requests" else "token rate limit"
    delay = ceil_seconds(decision.delay) if math.isfinite(decision.delay) else 60
    message = (
        f"Requests to the Embeddings_Create Operation under Azure OpenAI API version {api_version} "
        f"have exceeded {kind} of your current OpenAI S0 pricing tier. Please retry after {delay} seconds. "
        "Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the "
        "default rate limit."
    )
    return {"error": {"code": "429", "message": message}}


def quota_error() -> ApiError:
    """Return OpenAI's 429 `insufficient_quota` error, which retrying does not fix."""
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors."
    )
    return ApiError(429, message, error_type="insufficient_quota", code="insufficient_quota")


def auth_error(*, missing: bool) -> ApiError:
    """Return OpenAI's 401 `invalid_api_key` error; the key itself is never echoed."""
    if missing:
        message = (
            "You didn't provide an API key. Provide it in an Authorization header using Bearer auth "
            "(Authorization: Bearer YOUR_KEY), or in an api-key header on the Azure paths."
        )
    else:
        message = "Incorrect API key provided. Use one of the keys this simulator was started with."
    return ApiError(401, message, code="invalid_api_key")


class EmbeddingPayload:
    """A 200 body, and the indices of the inputs whose vectors it carries intact."""

    def __init__(self, body: bytes, delivered: list[int]) -> None:
        self.body = body
        self.delivered = delivered


def build_embedding_payload(
    request: EmbeddingRequest, vectors: VectorBatch, *, base64: bool, fault: FaultKind | None, faults: Faults
) -> EmbeddingPayload:
    """Build the embeddings list, damaged by `fault` when it is a body fault."""
    rows = vectors.base64_rows() if base64 else vectors.float_rows()
    data: list[dict[str, Any]] = [
        {"object": "embedding", "index": index, "embedding": row} for index, row in enumerate(rows)
    ]
    delivered = _damage_data(data, fault, faults, base64=base64, dimension=vectors.dimension)

    tokens = request.total_tokens
    payload = {
        "object": "list",
        "data": data,
        "model": request.model.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    if fault is FaultKind.NAN_VECTOR and not base64:
        nan_list = b"[" + b",".join([b"NaN"] * vectors.dimension) + b"]"
        body = body.replace(orjson.dumps(_NAN_MARKER), nan_list, 1)
    if fault is FaultKind.MALFORMED_JSON:
        body = body[: len(body) // 2]
    return EmbeddingPayload(body, delivered)


def _damage_data(
    data: list[dict[str, Any]], fault: FaultKind | None, faults: Faults, *, base64: bool, dimension: int
) -> list[int]:
    """Apply a body fault to `data` in place; return the indices whose vectors stay intact."""
    delivered = list(range(len(data)))
    if fault is FaultKind.MALFORMED_JSON:
        return []
    if fault is FaultKind.MISSING_VECTORS:
        data.pop()
        return delivered[:-1]
    if fault is FaultKind.SHUFFLED_INDEX:
        _shuffle(data, faults)
        return delivered

    victim = faults.random_index(len(data))
    if fault is FaultKind.NULL_VECTOR:
        data[victim]["embedding"] = None
    elif fault is FaultKind.EMPTY_VECTOR:
        data[victim]["embedding"] = "" if base64 else []
    elif fault is FaultKind.NAN_VECTOR:
        data[victim]["embedding"] = _nan_row(dimension, base64=base64)
    else:
        return delivered
    return [index for index in delivered if index != victim]


def _nan_row(dimension: int, *, base64: bool) -> str:
    """Return a NaN vector: a marker replaced by literal `NaN`s after orjson, or base64 of float32 NaNs."""
    if not base64:
        return _NAN_MARKER
    return base64_codec.b64encode(struct.pack(f"<{dimension}f", *([math.nan] * dimension))).decode("ascii")


def _shuffle(data: list[dict[str, Any]], faults: Faults) -> None:
    """Put `data` out of `index` order; with one entry there is no other order."""
    if len(data) < 2:
        return
    order = list(range(len(data)))
    while order == sorted(order):
        faults.shuffle(order)
    data[:] = [data[position] for position in order]

