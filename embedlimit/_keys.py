"""API keys, each with its own rate limiter, and the choice of key for the next request.

A key is never logged, printed or put in a message: it appears as its fingerprint, the key's
position and its last four characters (`#1 sk-...abcd`), as OpenAI's dashboard shows keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from embedlimit._errors import AuthenticationError, FatalError, QuotaExceededError
from embedlimit._limiter import RateLimiter

__all__ = ["ApiKey", "KeyPool", "fingerprint"]

logger = logging.getLogger(__name__)


def fingerprint(secret: str, index: int) -> str:
    """Return a name for a key that is safe to log: its index, and its last 4 characters if it is long."""
    prefix = "sk-" if secret.startswith("sk-") else ""
    tail = secret[-4:] if len(secret) >= 16 else ""
    return f"#{index} {prefix}...{tail}"


class ApiKey:
    """One API key, its limiter, and its state; `repr()` shows only the fingerprint."""

    __slots__ = ("_secret", "fingerprint", "index", "limiter", "pending", "retired_because")

    def __init__(self, secret: str, index: int, limiter: RateLimiter) -> None:
        self._secret = secret
        self.index = index
        self.fingerprint = fingerprint(secret, index)
        self.limiter = limiter
        self.pending = 0
        self.retired_because: str | None = None

    @property
    def secret(self) -> str:
        return self._secret

    def __repr__(self) -> str:
        return f"ApiKey({self.fingerprint})"


class KeyPool:
    """The keys of an embedder; requests go to the active key with the most headroom per pending request."""

    def __init__(self, secrets: Sequence[str], make_limiter: Callable[[], RateLimiter]) -> None:
        self.keys = [ApiKey(secret, index, make_limiter()) for index, secret in enumerate(secrets)]
        self._last_error: FatalError | None = None

    @property
    def secrets(self) -> list[str]:
        return [key.secret for key in self.keys]

    @property
    def active(self) -> list[ApiKey]:
        return [key for key in self.keys if key.retired_because is None]

    def choose(self) -> ApiKey:
        """Return the key for the next request, or raise the FatalError that retired the last key.

        Headroom is divided by the requests already waiting on or holding a key, so that many
        requests chosen at the same moment spread over equal keys instead of piling on one.
        """
        active = self.active
        if not active:
            raise self._all_retired_error()
        return max(active, key=lambda key: key.limiter.headroom() / (1 + key.pending))

    def retire(self, key: ApiKey, error: FatalError) -> None:
        """Stop using `key` after `error`, with one WARNING; the other keys carry on."""
        if key.retired_because is not None:
            return
        key.retired_because = _reason(error)
        self._last_error = error
        remaining = len(self.active)
        logger.warning(
            "API key %s retired after %s (status %s, code %s); %d of %d keys remain",
            key.fingerprint,
            type(error).__name__,
            error.status,
            error.code,
            remaining,
            len(self.keys),
        )

    def _all_retired_error(self) -> FatalError:
        reasons = "; ".join(f"key {key.fingerprint}: {key.retired_because}" for key in self.keys)
        message = f"all {len(self.keys)} API keys are retired ({reasons}). {_next_step(self._last_error)}"
        last = self._last_error
        error_type = type(last) if isinstance(last, AuthenticationError | QuotaExceededError) else FatalError
        if last is None:
            return error_type(message)
        error = error_type(message, status=last.status, code=last.code, request_id=last.request_id)
        error.__cause__ = last  # the server's own message for the last key retired
        return error


def _reason(error: FatalError) -> str:
    if isinstance(error, QuotaExceededError):
        return f"quota exceeded ({error.code or 'insufficient_quota'})"
    if isinstance(error, AuthenticationError):
        return f"authentication failed (HTTP {error.status})"
    return type(error).__name__


def _next_step(error: FatalError | None) -> str:
    """Return what to check after the last key was retired by `error`."""
    if isinstance(error, AuthenticationError):
        return "Check that the keys are valid for this endpoint, then start the run again."
    if isinstance(error, QuotaExceededError):
        return "Add credit or raise the usage limit of the account or project, then start the run again."
    return "Check the keys and the account's quota and billing, then start the run again."
