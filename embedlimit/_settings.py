"""The settings of an `Embedder`: defaults, environment variables, and validation.

Every invalid value raises `ConfigurationError` at construction, naming the value and the fix,
so a typo fails before the first request instead of an hour into a run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from embedlimit._client import DEFAULT_AZURE_API_VERSION, EncodingFormat, Endpoint, azure_endpoint, openai_endpoint
from embedlimit._errors import ConfigurationError
from embedlimit._metrics import DEFAULT_PRICES_PER_MILLION_TOKENS, RequestRecord
from embedlimit._packing import OVERLONG_POLICIES, OverlongPolicy
from embedlimit._vectors import VectorType, resolve_vector_type

__all__ = [
    "DEFAULT_BASE_URL",
    "MODEL_DIMENSIONS",
    "EmbedderSettings",
    "InvalidPolicy",
    "build_settings",
    "check_count",
    "check_seconds",
    "resolve_api_keys",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"

MODEL_DIMENSIONS: Mapping[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
"""Full vector length of OpenAI's embedding models (OpenAI embeddings guide)."""

MODELS_WITHOUT_DIMENSIONS = frozenset({"text-embedding-ada-002"})
"""Models that reject the `dimensions` parameter: only text-embedding-3 models accept it."""

InvalidPolicy = Literal["raise", "skip"]
"""The policy of `embed()` for an invalid text: raise InvalidInputError, or return None in its place."""

MIN_TOKENS_PER_INPUT = 16


@dataclass(frozen=True)
class EmbedderSettings:
    """The validated settings of an embedder; see `Embedder` for each one's meaning."""

    model: str
    api_keys: tuple[str, ...]
    endpoint: Endpoint
    dimension: int | None
    vector_type: VectorType
    requests_per_minute: int | None
    tokens_per_minute: int | None
    max_inputs_per_request: int
    max_tokens_per_request: int
    max_tokens_per_input: int
    overlong: OverlongPolicy
    on_invalid: InvalidPolicy
    min_concurrency: int
    max_concurrency: int
    coalesce_window: float
    connect_timeout: float
    read_timeout: float
    max_pending_requests: int
    max_pending_inputs: int
    max_isolation_requests: int
    price_per_million_tokens: float | None
    on_request: Callable[[RequestRecord], None] | None

    def __repr__(self) -> str:
        return f"EmbedderSettings(model={self.model!r}, url={self.endpoint.url!r}, keys={len(self.api_keys)})"


def resolve_api_keys(api_key: str | Sequence[str] | None, *, azure: bool) -> tuple[str, ...]:
    """Return the keys given, or those in the environment, split on commas; raise when there are none."""
    if api_key is None:
        names = ("AZURE_OPENAI_API_KEY", "OPENAI_API_KEY") if azure else ("OPENAI_API_KEY",)
        api_key = next((os.environ[name] for name in names if os.environ.get(name)), None)
        if api_key is None:
            raise ConfigurationError(
                f"no API key was given; pass the api_key argument or set the {' or '.join(names)} "
                "environment variable (several keys may be separated by commas)"
            )
    raw = api_key.split(",") if isinstance(api_key, str) else list(api_key)
    keys = []
    for position, key in enumerate(raw):
        if not isinstance(key, str):
            raise ConfigurationError(f"API key #{position} is of type {type(key).__name__}; expected str")
        if key.strip():
            keys.append(key.strip())
    if not keys:
        raise ConfigurationError("api_key is empty; pass at least one non-empty key")
    if len(set(keys)) != len(keys):
        raise ConfigurationError("api_key lists the same key twice; give each key once")
    return tuple(keys)


def resolve_endpoint(
    *,
    model: str,
    base_url: str | None,
    dimensions: int | None,
    encoding_format: EncodingFormat,
    azure_endpoint_url: str | None,
    azure_deployment: str | None,
    api_version: str | None,
) -> Endpoint:
    """Return the OpenAI endpoint, or the Azure one when `azure_endpoint_url` is set."""
    if encoding_format not in ("base64", "float"):
        raise ConfigurationError(f"encoding_format must be 'base64' or 'float', got {encoding_format!r}")
    if azure_endpoint_url is None:
        url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        _check_url("base_url", url)
        return openai_endpoint(url, model, dimensions=dimensions, encoding_format=encoding_format)

    if base_url is not None:
        raise ConfigurationError("set either base_url or azure_endpoint, not both")
    _check_url("azure_endpoint", azure_endpoint_url)
    version = api_version or os.environ.get("OPENAI_API_VERSION") or DEFAULT_AZURE_API_VERSION
    return azure_endpoint(
        azure_endpoint_url,
        azure_deployment or model,
        api_version=version,
        dimensions=dimensions,
        encoding_format=encoding_format,
    )


def _check_url(name: str, url: str) -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"{name} must be an http:// or https:// URL such as {DEFAULT_BASE_URL!r}, got {url!r}"
        )


def check_model_dimensions(model: str, dimensions: int | None) -> int | None:
    """Return the vector length to expect, or None to learn it from the first response."""
    if not isinstance(model, str) or not model.strip():
        raise ConfigurationError(
            f"model must be a non-empty model name such as 'text-embedding-3-small', got {model!r}"
        )
    if dimensions is None:
        return MODEL_DIMENSIONS.get(model)
    check_count("dimensions", dimensions)
    if model in MODELS_WITHOUT_DIMENSIONS:
        raise ConfigurationError(f"{model} does not accept dimensions; remove dimensions={dimensions}")
    full = MODEL_DIMENSIONS.get(model)
    if full is not None and dimensions > full:
        raise ConfigurationError(f"dimensions={dimensions} exceeds the {full} dimensions of {model}; lower it")
    return dimensions


def check_count(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def check_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    valid = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not valid:
        rule = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be a finite number of seconds {rule}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        listed = ", ".join(repr(choice) for choice in choices)
        raise ConfigurationError(f"{name} must be one of {listed}, got {value!r}")


def check_request_limits(max_inputs: int, max_tokens: int, max_tokens_per_input: int) -> None:
    check_count("max_inputs_per_request", max_inputs)
    check_count("max_tokens_per_input", max_tokens_per_input, MIN_TOKENS_PER_INPUT)
    check_count("max_tokens_per_request", max_tokens)
    if max_tokens < max_tokens_per_input:
        raise ConfigurationError(
            f"max_tokens_per_request={max_tokens} is below max_tokens_per_input={max_tokens_per_input}, "
            "so a long input could never be sent; raise max_tokens_per_request"
        )


def check_concurrency(min_concurrency: int, max_concurrency: int) -> None:
    check_count("min_concurrency", min_concurrency)
    check_count("max_concurrency", max_concurrency)
    if min_concurrency > max_concurrency:
        raise ConfigurationError(
            f"min_concurrency={min_concurrency} exceeds max_concurrency={max_concurrency}; lower min_concurrency"
        )


def resolve_vector_type_setting(vector_type: VectorType | None) -> VectorType:
    if vector_type not in ("numpy", "array", None):
        raise ConfigurationError(f"vector_type must be 'numpy', 'array' or None, got {vector_type!r}")
    try:
        return resolve_vector_type(vector_type)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None


def resolve_price(model: str, prices: Mapping[str, float] | None) -> float | None:
    """Return the price per million tokens of `model`, from `prices` or else the default table."""
    table = {**DEFAULT_PRICES_PER_MILLION_TOKENS, **(prices or {})}
    for name, price in table.items():
        if isinstance(price, bool) or not isinstance(price, int | float) or not math.isfinite(price) or price < 0:
            raise ConfigurationError(f"price of {name!r} must be a finite number of dollars >= 0, got {price!r}")
    model_price = table.get(model)
    return None if model_price is None else float(model_price)


def check_policies(overlong: object, on_invalid: object) -> None:
    check_choice("overlong", overlong, OVERLONG_POLICIES)
    check_choice("on_invalid", on_invalid, ("raise", "skip"))



def build_settings(
    *,
    model: str,
    api_key: str | Sequence[str] | None,
    base_url: str | None,
    dimensions: int | None,
    azure_endpoint: str | None,
    azure_deployment: str | None,
    api_version: str | None,
    encoding_format: EncodingFormat,
    vector_type: VectorType | None,
    requests_per_minute: int | None,
    tokens_per_minute: int | None,
    max_inputs_per_request: int,
    max_tokens_per_request: int,
    max_tokens_per_input: int,
    overlong: OverlongPolicy,
    on_invalid: InvalidPolicy,
    min_concurrency: int,
    max_concurrency: int,
    coalesce_window: float,
    connect_timeout: float,
    read_timeout: float,
    max_pending_requests: int | None,
    max_pending_inputs: int,
    max_isolation_requests: int,
    prices: Mapping[str, float] | None,
    on_request: Callable[[RequestRecord], None] | None,
) -> EmbedderSettings:
    """Validate every argument of `Embedder` and fill in the defaults and the environment."""
    dimension = check_model_dimensions(model, dimensions)
    endpoint = resolve_endpoint(
        model=model,
        base_url=base_url,
        dimensions=dimensions,
        encoding_format=encoding_format,
        azure_endpoint_url=azure_endpoint,
        azure_deployment=azure_deployment,
        api_version=api_version,
    )
    api_keys = resolve_api_keys(api_key, azure=endpoint.azure)

    for name, limit in (("requests_per_minute", requests_per_minute), ("tokens_per_minute", tokens_per_minute)):
        if limit is not None:
            check_count(name, limit)
    check_request_limits(max_inputs_per_request, max_tokens_per_request, max_tokens_per_input)
    if tokens_per_minute is not None and tokens_per_minute < max_tokens_per_input:
        raise ConfigurationError(
            f"tokens_per_minute={tokens_per_minute} is below max_tokens_per_input={max_tokens_per_input}, "
            "so a long input could never be sent; lower max_tokens_per_input to at most tokens_per_minute"
        )
    check_policies(overlong, on_invalid)
    check_concurrency(min_concurrency, max_concurrency)
    if on_request is not None and not callable(on_request):
        raise ConfigurationError(f"on_request must be a callable taking a RequestRecord, got {on_request!r}")

    return EmbedderSettings(
        model=model,
        api_keys=api_keys,
        endpoint=endpoint,
        dimension=dimension,
        vector_type=resolve_vector_type_setting(vector_type),
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
        max_inputs_per_request=max_inputs_per_request,
        max_tokens_per_request=max_tokens_per_request,
        max_tokens_per_input=max_tokens_per_input,
        overlong=overlong,
        on_invalid=on_invalid,
        min_concurrency=min_concurrency,
        max_concurrency=max_concurrency,
        coalesce_window=check_seconds("coalesce_window", coalesce_window, allow_zero=True),
        connect_timeout=check_seconds("connect_timeout", connect_timeout),
        read_timeout=check_seconds("read_timeout", read_timeout),
        max_pending_requests=check_count(
            "max_pending_requests", max_pending_requests if max_pending_requests is not None else 2 * max_concurrency
        ),
        max_pending_inputs=check_count("max_pending_inputs", max_pending_inputs),
        max_isolation_requests=check_count("max_isolation_requests", max_isolation_requests),
        price_per_million_tokens=resolve_price(model, prices),
        on_request=on_request,
    )
