"""Turn the caller's texts into inputs, and group inputs into requests.

The embeddings endpoint rejects a request with more than 2,048 inputs, with more than 300,000
tokens summed over its inputs, with an input of more than 8,192 tokens, or with an empty input.
Everything here is a pure function of the texts and the limits, so it is checked before a
request is sent: a bad text is rejected alone instead of failing the request that carries it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from embedlimit import _tokens
from embedlimit._tokens import Encoding, estimate_tokens

__all__ = [
    "MAX_INPUTS_PER_REQUEST",
    "MAX_TOKENS_PER_INPUT",
    "MAX_TOKENS_PER_REQUEST",
    "BatchBuilder",
    "OverlongPolicy",
    "Piece",
    "Prepared",
    "check_text",
    "pack_pieces",
    "prepare_texts",
    "split_text",
]

MAX_INPUTS_PER_REQUEST = 2048
"""Maximum inputs in one embeddings request (OpenAI API reference)."""

MAX_TOKENS_PER_REQUEST = 300_000
"""Maximum tokens summed over the inputs of one request (OpenAI API reference, 2025)."""

MAX_TOKENS_PER_INPUT = 8192
"""Maximum tokens in one input for text-embedding-3-small, -3-large and ada-002."""

OverlongPolicy = Literal["truncate", "split", "error"]
"""The policy for a text over the per-input maximum: cut it, embed its pieces and average them, or reject it."""

OVERLONG_POLICIES: tuple[OverlongPolicy, ...] = ("truncate", "split", "error")


@dataclass(frozen=True, slots=True)
class Piece:
    """One input to send: the whole text of an item, or one piece of a split item."""

    item: int
    text: str
    tokens: int


@dataclass(slots=True)
class Prepared:
    """The inputs made from a sequence of texts, and the reason each rejected text was rejected.

    Items are numbered by their position in the sequence. An item split under the `split` policy
    has several pieces, in text order, each weighted by its tokens when the vectors are averaged.
    """

    pieces: list[Piece] = field(default_factory=list)
    rejected: dict[int, str] = field(default_factory=dict)
    truncated: int = 0
    split: int = 0


def check_text(value: object) -> str | None:
    """Return why `value` cannot be sent as an input, or None when it can."""
    if value is None:
        return "text is None"
    if not isinstance(value, str):
        return f"text is of type {type(value).__name__}; expected str"
    if not value or value.isspace():
        return "text is empty or only whitespace"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"text contains a lone surrogate at position {error.start}, which is not valid UTF-8"
    return None


def prepare_texts(
    texts: Sequence[object],
    *,
    max_tokens_per_input: int = MAX_TOKENS_PER_INPUT,
    overlong: OverlongPolicy = "truncate",
    first_item: int = 0,
) -> Prepared:
    """Check and count the tokens of `texts`, and apply the over-long policy.

    Items are numbered from `first_item`. A rejected item (invalid, or over-long under the
    `error` policy) gets no piece and a reason in `rejected`.
    """
    prepared = Prepared()
    valid: list[tuple[int, str]] = []
    for position, value in enumerate(texts):
        reason = check_text(value)
        if reason is None:
            valid.append((first_item + position, value))  # type: ignore[arg-type]
        else:
            prepared.rejected[first_item + position] = reason

    counts = _tokens.count_tokens_batch([text for _, text in valid])
    for (item, text), tokens in zip(valid, counts, strict=True):
        if tokens <= max_tokens_per_input:
            prepared.pieces.append(Piece(item, text, tokens))
        else:
            _apply_overlong_policy(prepared, item, text, tokens, max_tokens_per_input, overlong)
    return prepared


def _apply_overlong_policy(
    prepared: Prepared, item: int, text: str, tokens: int, max_tokens: int, overlong: OverlongPolicy
) -> None:
    if overlong == "error":
        prepared.rejected[item] = (
            f"text has {tokens} tokens, more than the maximum of {max_tokens} per input; shorten it, "
            "or set overlong='truncate' or overlong='split'"
        )
        return

    # A piece of only whitespace carries no meaning, and the API may reject it as empty.
    pieces = ((piece, count) for piece, count in _iter_pieces(text, max_tokens) if not piece.isspace())
    if overlong == "truncate":
        head, head_tokens = next(pieces)
        prepared.pieces.append(Piece(item, head, head_tokens))
        prepared.truncated += 1
        return

    prepared.pieces.extend(Piece(item, piece, piece_tokens) for piece, piece_tokens in pieces)
    prepared.split += 1


def split_text(text: str, max_tokens: int) -> list[tuple[str, int]]:
    """Cut `text` into consecutive pieces of at most `max_tokens` tokens each, with their counts.

    Pieces end on character boundaries, so joining them gives back `text`.
    """
    return list(_iter_pieces(text, max_tokens))


def _iter_pieces(text: str, max_tokens: int) -> Iterator[tuple[str, int]]:
    encoding = _tokens.get_encoding()
    if encoding is None:
        return _iter_estimated_pieces(text, max_tokens)
    return _iter_encoded_pieces(text, max_tokens, encoding)


def _iter_encoded_pieces(text: str, max_tokens: int, encoding: Encoding) -> Iterator[tuple[str, int]]:
    tokens = encoding.encode_ordinary(text)
    start_token = 0
    start_char = 0
    while start_token < len(tokens):
        end_token = min(start_token + max_tokens, len(tokens))
        while True:
            piece, end_token = _decode_to_boundary(text, start_char, tokens, start_token, end_token, encoding)
            # A piece encoded on its own may take a token or two more than its slice did, because
            # the encoder merges differently at its start.
            count = len(encoding.encode_ordinary(piece))
            if count <= max_tokens:
                break
            end_token -= count - max_tokens

        yield piece, count
        start_char += len(piece)
        start_token = end_token


def _decode_to_boundary(
    text: str, start_char: int, tokens: list[int], start_token: int, end_token: int, encoding: Encoding
) -> tuple[str, int]:
    """Decode `tokens[start_token:end_token]`, moving the end back until it falls between characters.

    A token can carry part of a multi-byte UTF-8 character, so a cut between two tokens can fall
    inside a character. A character has at most 4 bytes and each token at least one, so the end
    moves back at most 3 tokens.
    """
    for end in range(end_token, max(start_token, end_token - 4), -1):
        piece = encoding.decode(tokens[start_token:end])
        if text.startswith(piece, start_char):
            return piece, end
    raise ValueError(f"no character boundary within 4 tokens of token {end_token}; the encoding is broken")


def _iter_estimated_pieces(text: str, max_tokens: int) -> Iterator[tuple[str, int]]:
    start = 0
    while start < len(text):
        end = _longest_estimated_prefix(text, start, max_tokens)
        piece = text[start:end]
        yield piece, estimate_tokens(piece)
        start = end


def _longest_estimated_prefix(text: str, start: int, max_tokens: int) -> int:
    """Return the largest end such that `estimate_tokens(text[start:end])` is at most `max_tokens`."""
    low, high = start + 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if estimate_tokens(text[start:middle]) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return low


class BatchBuilder:
    """Group pieces, in order, into batches within the per-request limits.

    `add` returns a full batch when the next piece would not fit into the open one, and `flush`
    returns what is left. No piece may have more tokens than `max_tokens` by itself.
    """

    def __init__(self, max_inputs: int, max_tokens: int) -> None:
        self.max_inputs = max_inputs
        self.max_tokens = max_tokens
        self._batch: list[Piece] = []
        self._tokens = 0

    def __len__(self) -> int:
        return len(self._batch)

    def add(self, piece: Piece) -> list[Piece] | None:
        if piece.tokens > self.max_tokens:
            raise ValueError(f"piece of {piece.tokens} tokens exceeds the request maximum of {self.max_tokens}")
        full = None
        if len(self._batch) >= self.max_inputs or self._tokens + piece.tokens > self.max_tokens:
            full = self.flush()
        self._batch.append(piece)
        self._tokens += piece.tokens
        return full

    def flush(self) -> list[Piece]:
        batch = self._batch
        self._batch = []
        self._tokens = 0
        return batch


def pack_pieces(pieces: Iterable[Piece], max_inputs: int, max_tokens: int) -> list[list[Piece]]:
    """Group `pieces`, in order, into batches of at most `max_inputs` inputs and `max_tokens` tokens."""
    builder = BatchBuilder(max_inputs, max_tokens)
    batches = [batch for piece in pieces if (batch := builder.add(piece))]
    last = builder.flush()
    if last:
        batches.append(last)
    return batches
