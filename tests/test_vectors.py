"""Decoding, checking and averaging of embedding vectors, with numpy and with array("f")."""

from __future__ import annotations

import base64
import math
import struct
from array import array

import numpy
import pytest

from embedlimit._vectors import VectorDecodeError, VectorType, average_vectors, decode_vectors

VECTOR_TYPES: list[VectorType] = ["numpy", "array"]


def encode(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


@pytest.mark.parametrize("vector_type", VECTOR_TYPES)
def test_decode_base64(vector_type: VectorType) -> None:
    vectors = decode_vectors([encode([0.5, -1.0, 2.0]), encode([1.0, 0.0, 0.25])], 3, vector_type)

    assert [list(vector) for vector in vectors] == [[0.5, -1.0, 2.0], [1.0, 0.0, 0.25]]


@pytest.mark.parametrize("vector_type", VECTOR_TYPES)
def test_decode_float_lists(vector_type: VectorType) -> None:
    vectors = decode_vectors([[0.5, -1, 2.0]], 3, vector_type)

    assert list(vectors[0]) == [0.5, -1.0, 2.0]


def test_numpy_vectors_are_float32_and_writable() -> None:
    vectors = decode_vectors([encode([0.5, 1.0]), encode([2.0, 3.0])], 2, "numpy")

    assert all(isinstance(vector, numpy.ndarray) for vector in vectors)
    assert all(vector.dtype == numpy.float32 for vector in vectors)  # type: ignore[union-attr]
    assert vectors[0].shape == (2,)  # type: ignore[union-attr]
    vectors[0][0] = 9.0
    assert vectors[1][0] == 2.0


def test_array_vectors_are_float_arrays() -> None:
    vectors = decode_vectors([encode([0.5, 1.0])], 2, "array")

    assert isinstance(vectors[0], array)
    assert vectors[0].typecode == "f"


@pytest.mark.parametrize("vector_type", VECTOR_TYPES)
@pytest.mark.parametrize(
    ("embeddings", "message"),
    [
        ([encode([1.0, 2.0]), encode([1.0])], "embedding 1 has 1 dimensions; expected 2"),
        ([encode([1.0, float("nan")])], "embedding 0 contains NaN or infinite values"),
        ([[1.0, math.inf]], "embedding 0 contains NaN or infinite values"),
        ([""], "embedding 0 is empty"),
        ([[]], "embedding 0 is empty"),
        ([None], "embedding 0 is of type NoneType"),
        ([[1.0, "2"]], "embedding 0 contains str"),
        ([[1.0, None]], "embedding 0 contains NoneType"),
        (["A"], "not valid base64"),
        ([base64.b64encode(b"12345").decode()], "not a whole number of float32"),
    ],
)
def test_decode_rejects(vector_type: VectorType, embeddings: list[object], message: str) -> None:
    with pytest.raises(VectorDecodeError, match=message):
        decode_vectors(embeddings, None, vector_type)


@pytest.mark.parametrize("vector_type", VECTOR_TYPES)
def test_decode_checks_expected_dimension(vector_type: VectorType) -> None:
    with pytest.raises(VectorDecodeError, match="has 2 dimensions; expected 3"):
        decode_vectors([encode([1.0, 2.0])], 3, vector_type)


@pytest.mark.parametrize("vector_type", VECTOR_TYPES)
def test_decode_rejects_float32_overflow_in_lists(vector_type: VectorType) -> None:
    with pytest.raises(VectorDecodeError):
        decode_vectors([[1.0, 1e300]], None, vector_type)


@pytest.mark.parametrize("vector_type", VECTOR_TYPES)
def test_average_vectors_weights_and_normalises(vector_type: VectorType) -> None:
    first = decode_vectors([[1.0, 0.0]], 2, vector_type)[0]
    second = decode_vectors([[0.0, 1.0]], 2, vector_type)[0]

    mean = average_vectors([first, second], [3.0, 1.0], vector_type)

    expected = [3 / math.sqrt(10), 1 / math.sqrt(10)]
    assert list(mean) == pytest.approx(expected, rel=1e-6)
    assert math.fsum(float(value) ** 2 for value in mean) == pytest.approx(1.0, rel=1e-6)
    assert isinstance(mean, numpy.ndarray if vector_type == "numpy" else array)


@pytest.mark.parametrize("vector_type", VECTOR_TYPES)
def test_average_of_opposites_stays_zero(vector_type: VectorType) -> None:
    vectors = decode_vectors([[1.0, 0.0], [-1.0, 0.0]], 2, vector_type)

    mean = average_vectors(vectors, [1.0, 1.0], vector_type)

    assert list(mean) == [0.0, 0.0]
