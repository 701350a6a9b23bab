"""embedlimit: embed millions of texts through the OpenAI embeddings API at the full rate limit.

This module only re-exports the public names; each lives in a private module.
"""

from embedlimit._backfill import BackfillProgress, BackfillReport, backfill
from embedlimit._clock import Clock, LoopClock, ScaledClock
from embedlimit._debian import LoadReport, load_debian
from embedlimit._embedder import Embedder
from embedlimit._errors import (
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
)
from embedlimit._headers import RateLimitInfo, parse_rate_limit_headers
from embedlimit._limiter import LimiterStatistics, RateLimiter
from embedlimit._metrics import DEFAULT_PRICES_PER_MILLION_TOKENS, MetricsSnapshot, RequestRecord
from embedlimit._replay import ReplayReport, replay
from embedlimit._results import EmbedderClosedError, EmbeddingResult
from embedlimit._retry import RetryPolicy
from embedlimit._vectors import Vector
from embedlimit._version import __version__

__all__ = [
    "DEFAULT_PRICES_PER_MILLION_TOKENS",
    "AuthenticationError",
    "BackfillProgress",
    "BackfillReport",
    "CapacityError",
    "Clock",
    "ConfigurationError",
    "EmbedLimitError",
    "Embedder",
    "EmbedderClosedError",
    "EmbeddingResult",
    "FatalError",
    "InputError",
    "InvalidInputError",
    "InvalidResponseError",
    "LimiterStatistics",
    "LoadReport",
    "LoopClock",
    "MetricsSnapshot",
    "QuotaExceededError",
    "RateLimitError",
    "RateLimitInfo",
    "RateLimiter",
    "ReplayReport",
    "RequestRecord",
    "RequestTimeoutError",
    "RetryPolicy",
    "RetryableError",
    "ScaledClock",
    "ServerError",
    "TransportError",
    "Vector",
    "__version__",
    "backfill",
    "load_debian",
    "parse_rate_limit_headers",
    "replay",
]
