"""The embedding models the simulator serves, with their output sizes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["DEFAULT_MODELS", "EmbeddingModel"]


@dataclass(frozen=True)
class EmbeddingModel:
    """One embedding model: its name, its full vector length, and whether `dimensions` may shorten it.

    OpenAI's embeddings guide lists 1536 dimensions for text-embedding-3-small and
    text-embedding-ada-002 and 3072 for text-embedding-3-large. Only the text-embedding-3 models
    accept the `dimensions` parameter, from 1 up to the full length.
    """

    name: str
    dimension: int
    supports_dimensions: bool = True

    def __post_init__(self) -> None:
        if self.dimension < 1:
            raise ValueError(f"model {self.name!r}: dimension must be at least 1, got {self.dimension}")


DEFAULT_MODELS: Mapping[str, EmbeddingModel] = MappingProxyType(
    {
        "text-embedding-3-small": EmbeddingModel("text-embedding-3-small", 1536),
        "text-embedding-3-large": EmbeddingModel("text-embedding-3-large", 3072),
        "text-embedding-ada-002": EmbeddingModel("text-embedding-ada-002", 1536, supports_dimensions=False),
    }
)
"""The models served unless a simulator is configured with its own list, keyed by name."""
