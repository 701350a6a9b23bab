"""Embedding vectors: decoding from a response, checking, and averaging.

A vector is a one-dimensional float32 `numpy.ndarray` when numpy is installed, else an
`array.array("f")`. OpenAI's base64 encoding is the little-endian bytes of the float32 values,
so decoding is a copy of bytes. A server that ignores `encoding_format` sends lists of floats,
which are accepted too.
"""

from __future__ import annotations

import binascii
import math
import sys
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Union

if TYPE_CHECKING:
    import numpy
    import numpy.typing

try:
    import numpy as _numpy
except ImportError:  # pragma: no cover - numpy is in the dev and fast extras
    _numpy = None  # type: ignore[assignment]

__all__ = ["HAVE_NUMPY", "Vector", "VectorType", "average_vectors", "decode_vectors", "resolve_vector_type"]

HAVE_NUMPY = _numpy is not None

Vector = Union["numpy.typing.NDArray[numpy.float32]", "array[float]"]
"""One embedding: a float32 numpy array, or `array.array("f")` without numpy."""

VectorType = Literal["numpy", "array"]


class VectorDecodeError(ValueError):
    """An embedding in a response that cannot be decoded or fails the checks."""


def resolve_vector_type(requested: VectorType | None) -> VectorType:
    """Return `requested`, or "numpy" when numpy is installed and "array" otherwise."""
    if requested is None:
        return "numpy" if HAVE_NUMPY else "array"
    if requested == "numpy" and not HAVE_NUMPY:
        raise ValueError("vector_type='numpy' needs numpy; install it with `pip install numpy`")
    return requested


def decode_vectors(
    embeddings: Sequence[object], dimension: int | None, vector_type: VectorType
) -> list[Vector]:
    """Decode the `embedding` values of one response into vectors of one common length.

    Each value is a base64 string or a list of numbers. Raises VectorDecodeError when a value
    has another type, when the lengths differ from each other or from `dimension`, or when a
    component is NaN or infinite.
    """
    if vector_type == "numpy" and all(isinstance(value, str) for value in embeddings):
        return _decode_base64_numpy(embeddings, dimension)  # type: ignore[arg-type]
    vectors = [_decode_one(value, position, vector_type) for position, value in enumerate(embeddings)]
    _check_lengths([len(vector) for vector in vectors], dimension)
    for position, vector in enumerate(vectors):
        _check_finite(vector, position)
    return vectors


def _decode_base64_numpy(embeddings: Sequence[str], dimension: int | None) -> list[Vector]:
    # One buffer for the whole response: a single finiteness check, and each vector is a
    # writable view of one row.
    raw = [_base64_bytes(value, position) for position, value in enumerate(embeddings)]
    for position, chunk in enumerate(raw):
        _check_whole_floats(chunk, position)
    _check_lengths([len(chunk) // 4 for chunk in raw], dimension)
    if not raw:
        return []

    matrix = _numpy.frombuffer(bytearray().join(raw), dtype="<f4").reshape(len(raw), -1)
    if sys.byteorder == "big":  # pragma: no cover - no big-endian test machine
        matrix = matrix.astype(_numpy.float32)
    finite = _numpy.isfinite(matrix).all(axis=1)
    if not finite.all():
        position = int(_numpy.argmin(finite))
        raise VectorDecodeError(f"embedding {position} contains NaN or infinite values")
    return list(matrix)


def _decode_one(value: object, position: int, vector_type: VectorType) -> Vector:
    if isinstance(value, str):
        raw = _base64_bytes(value, position)
        _check_whole_floats(raw, position)
        return _from_bytes(raw, vector_type)
    if isinstance(value, list):
        return _from_numbers(value, position, vector_type)
    raise VectorDecodeError(
        f"embedding {position} is of type {type(value).__name__}; expected a base64 string or a list"
    )


def _base64_bytes(value: str, position: int) -> bytes:
    try:
        return binascii.a2b_base64(value)
    except (binascii.Error, ValueError) as error:
        raise VectorDecodeError(f"embedding {position} is not valid base64: {error}") from None


def _from_bytes(raw: bytes, vector_type: VectorType) -> Vector:
    if vector_type == "numpy":
        vector = _numpy.frombuffer(bytearray(raw), dtype="<f4")
        return vector if sys.byteorder == "little" else vector.astype(_numpy.float32)
    values = array("f", raw)
    if sys.byteorder == "big":  # pragma: no cover - no big-endian test machine
        values.byteswap()
    return values


def _from_numbers(values: list[object], position: int, vector_type: VectorType) -> Vector:
    for value in values:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise VectorDecodeError(
                f"embedding {position} contains {type(value).__name__} {value!r}; expected numbers"
            )
    if vector_type == "numpy":
        # A value beyond the float32 range becomes infinity here, which the finiteness check rejects.
        with _numpy.errstate(over="ignore"):
            return _numpy.asarray(values, dtype=_numpy.float32)
    try:
        return array("f", values)  # type: ignore[arg-type]
    except OverflowError:
        raise VectorDecodeError(f"embedding {position} contains a value outside the float32 range") from None


def _check_whole_floats(raw: bytes, position: int) -> None:
    if len(raw) % 4:
        raise VectorDecodeError(f"embedding {position} has {len(raw)} bytes, not a whole number of float32")


def _check_lengths(lengths: list[int], dimension: int | None) -> None:
    for position, length in enumerate(lengths):
        if length == 0:
            raise VectorDecodeError(f"embedding {position} is empty")
        expected = dimension if dimension is not None else lengths[0]
        if length != expected:
            raise VectorDecodeError(
                f"embedding {position} has {length} dimensions; expected {expected}"
            )


def _check_finite(vector: Vector, position: int) -> None:
    if isinstance(vector, array):
        finite = all(math.isfinite(value) for value in vector)
    else:
        finite = bool(_numpy.isfinite(vector).all())
    if not finite:
        raise VectorDecodeError(f"embedding {position} contains NaN or infinite values")


def average_vectors(vectors: Sequence[Vector], weights: Sequence[float], vector_type: VectorType) -> Vector:
    """Average `vectors` weighted by `weights`, then scale the result to unit length.

    A zero-length average (the pieces cancel out) is returned unscaled.
    """
    if vector_type == "numpy":
        stacked = _numpy.stack([_numpy.asarray(vector, dtype=_numpy.float64) for vector in vectors])
        mean = _numpy.average(stacked, axis=0, weights=_numpy.asarray(weights, dtype=_numpy.float64))
        norm = float(_numpy.linalg.norm(mean))
        scaled = mean / norm if norm > 0 else mean
        return scaled.astype(_numpy.float32)

    total = math.fsum(weights)
    dimension = len(vectors[0])
    mean_values = [
        math.fsum(weight * float(vector[i]) for vector, weight in zip(vectors, weights, strict=True)) / total
        for i in range(dimension)
    ]
    norm = math.sqrt(math.fsum(value * value for value in mean_values))
    return array("f", [value / norm for value in mean_values] if norm > 0 else mean_values)
