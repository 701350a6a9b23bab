"""The per-item result of `Embedder.embed_stream`, and the error of a closed embedder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from embedlimit._errors import EmbedLimitError
from embedlimit._vectors import Vector

__all__ = ["EmbedderClosedError", "EmbeddingResult"]

K = TypeVar("K")


@dataclass(frozen=True)
class EmbeddingResult(Generic[K]):
    """The outcome for one `(key, text)` item: its vector, or the error that made it fail.

    `error` is an `InvalidInputError` for a text rejected before sending or by the server. Texts
    rejected before sending are empty, None, not strings, contain a lone surrogate, or are
    over-long under `overlong="error"`. For an item whose request failed after all retries,
    `error` is that request's last error. Store the failed keys to retry or inspect them later.
    """

    key: K
    vector: Vector | None
    error: EmbedLimitError | None = None

    @property
    def ok(self) -> bool:
        """Whether the item has a vector."""
        return self.error is None

    @property
    def reason(self) -> str | None:
        """The error message of a failed item, None for a successful one."""
        return None if self.error is None else str(self.error)


class EmbedderClosedError(EmbedLimitError, RuntimeError):
    """The embedder was closed while a call was waiting, or a call was made after `aclose()`."""
