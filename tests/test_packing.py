"""Input checks, the over-long policies and the grouping of inputs into requests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from embedlimit import _tokens
from embedlimit._packing import (
    BatchBuilder,
    Piece,
    check_text,
    pack_pieces,
    prepare_texts,
    split_text,
)
from embedlimit._tokens import count_tokens_batch, estimate_tokens

LONG_TEXT = "héllo wörld, 你好世界 🎉 the quick brown fox. " * 400


@pytest.fixture
def no_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Count tokens as if no offline encoding loaded, with the conservative estimate."""
    monkeypatch.setattr(_tokens, "get_encoding", lambda: None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "text is empty or only whitespace"),
        ("  \n\t", "text is empty or only whitespace"),
        (None, "text is None"),
        (42, "text is of type int; expected str"),
        (b"bytes", "text is of type bytes; expected str"),
        ("ab\ud800cd", "text contains a lone surrogate at position 2, which is not valid UTF-8"),
    ],
)
def test_check_text_rejects(value: object, expected: str) -> None:
    assert check_text(value) == expected


@pytest.mark.parametrize("value", ["a", " padded ", "emoji 🎉", "中文", "x" * 100_000])
def test_check_text_accepts(value: str) -> None:
    assert check_text(value) is None


def test_prepare_texts_numbers_items_and_rejects() -> None:
    prepared = prepare_texts(["first", "", None, "fourth"], first_item=10)

    assert [piece.item for piece in prepared.pieces] == [10, 13]
    assert [piece.text for piece in prepared.pieces] == ["first", "fourth"]
    assert set(prepared.rejected) == {11, 12}
    assert prepared.rejected[12] == "text is None"


def test_truncate_cuts_to_max_tokens() -> None:
    prepared = prepare_texts([LONG_TEXT], max_tokens_per_input=100, overlong="truncate")

    assert len(prepared.pieces) == 1
    piece = prepared.pieces[0]
    assert piece.tokens <= 100
    assert piece.tokens == count_tokens_batch([piece.text])[0]
    assert LONG_TEXT.startswith(piece.text)
    assert prepared.truncated == 1


def test_truncate_keeps_short_text_whole() -> None:
    prepared = prepare_texts(["short"], max_tokens_per_input=100, overlong="truncate")

    assert prepared.pieces == [Piece(0, "short", 1)]
    assert prepared.truncated == 0


def test_split_covers_whole_text() -> None:
    prepared = prepare_texts(["before", LONG_TEXT, "after"], max_tokens_per_input=100, overlong="split")

    pieces_of_long = [piece for piece in prepared.pieces if piece.item == 1]
    assert len(pieces_of_long) > 1
    assert "".join(piece.text for piece in pieces_of_long) == LONG_TEXT
    assert all(piece.tokens <= 100 for piece in pieces_of_long)
    assert [piece.item for piece in prepared.pieces] == sorted(piece.item for piece in prepared.pieces)
    assert prepared.split == 1


def test_split_drops_whitespace_pieces() -> None:
    text = "word " * 200 + " " * 500 + "\n" * 300 + "end"

    prepared = prepare_texts([text], max_tokens_per_input=20, overlong="split")

    assert all(not piece.text.isspace() for piece in prepared.pieces)
    assert "".join(piece.text for piece in prepared.pieces).split() == text.split()


def test_truncate_skips_leading_whitespace_piece() -> None:
    text = "\n" * 400 + "content " * 100

    prepared = prepare_texts([text], max_tokens_per_input=20, overlong="truncate")

    assert len(prepared.pieces) == 1
    assert not prepared.pieces[0].text.isspace()
    assert prepared.pieces[0].tokens <= 20


def test_error_policy_rejects_long_text() -> None:
    prepared = prepare_texts([LONG_TEXT, "fine"], max_tokens_per_input=100, overlong="error")

    assert [piece.item for piece in prepared.pieces] == [1]
    assert "more than the maximum of 100 per input" in prepared.rejected[0]
    assert "overlong='split'" in prepared.rejected[0]


@pytest.mark.parametrize("max_tokens", [16, 100, 8192])
def test_split_text_pieces_fit_and_join(max_tokens: int) -> None:
    pieces = split_text(LONG_TEXT * 3, max_tokens)

    assert "".join(text for text, _ in pieces) == LONG_TEXT * 3
    assert all(tokens <= max_tokens for _, tokens in pieces)
    assert [tokens for _, tokens in pieces] == count_tokens_batch([text for text, _ in pieces])


def test_split_text_never_cuts_a_character() -> None:
    text = "🎉" * 3000  # each emoji is several tokens of partial UTF-8 bytes

    pieces = split_text(text, 50)

    assert "".join(piece for piece, _ in pieces) == text
    assert all(set(piece) == {"🎉"} for piece, _ in pieces)


def test_split_text_estimates_without_encoding(no_encoding: None) -> None:
    pieces = split_text(LONG_TEXT, 100)

    assert "".join(text for text, _ in pieces) == LONG_TEXT
    assert all(tokens <= 100 for _, tokens in pieces)
    assert all(tokens == estimate_tokens(text) for text, tokens in pieces)


def test_truncate_estimates_without_encoding(no_encoding: None) -> None:
    prepared = prepare_texts([LONG_TEXT], max_tokens_per_input=100, overlong="truncate")

    assert prepared.pieces[0].tokens <= 100
    assert LONG_TEXT.startswith(prepared.pieces[0].text)


def test_pack_pieces_respects_max_inputs() -> None:
    pieces = [Piece(item, f"t{item}", 1) for item in range(10)]

    batches = pack_pieces(pieces, max_inputs=4, max_tokens=1000)

    assert [len(batch) for batch in batches] == [4, 4, 2]


def test_pack_pieces_respects_max_tokens() -> None:
    pieces = [Piece(item, "t", tokens) for item, tokens in enumerate([5, 5, 5, 9, 1])]

    batches = pack_pieces(pieces, max_inputs=100, max_tokens=10)

    assert [[piece.tokens for piece in batch] for batch in batches] == [[5, 5], [5], [9, 1]]


def test_pack_pieces_empty() -> None:
    assert pack_pieces([], max_inputs=4, max_tokens=10) == []


def test_batch_builder_rejects_oversized_piece() -> None:
    builder = BatchBuilder(max_inputs=4, max_tokens=10)

    with pytest.raises(ValueError, match="11 tokens exceeds the request maximum of 10"):
        builder.add(Piece(0, "t", 11))


@given(
    st.lists(st.integers(min_value=1, max_value=50), max_size=200),
    st.integers(min_value=1, max_value=20),
    st.integers(min_value=50, max_value=300),
)
def test_pack_pieces_keeps_order_within_limits(token_counts: list[int], max_inputs: int, max_tokens: int) -> None:
    pieces = [Piece(item, "t", tokens) for item, tokens in enumerate(token_counts)]

    batches = pack_pieces(pieces, max_inputs, max_tokens)

    assert [piece for batch in batches for piece in batch] == pieces
    assert all(1 <= len(batch) <= max_inputs for batch in batches)
    assert all(sum(piece.tokens for piece in batch) <= max_tokens for batch in batches)
