"""Deterministic unit vectors derived from each input text, so a test can tell whose vector it got.

The definition is fixed, so it gives the same vector with and without numpy:

1. `hashlib.shake_256(SEED + text.encode("utf-8")).digest(4 * full_dimension)`. The seed does not
   depend on the model, and SHAKE is an extendable-output function, so the 1536 components of
   text-embedding-3-small are a prefix of the 3072 of text-embedding-3-large.
2. Read the bytes as little-endian uint32 `u` and map each to `(u + 0.5) / 2**31 - 1`, in (-1, 1).
3. Scale to unit length in float64, then round each component to float32.
4. For `dimensions=d`, keep the first d float32 components and scale them to unit length again in
   float64, then round to float32. OpenAI's embeddings guide describes shortening a
   text-embedding-3 vector the same way: cut it, then normalise it.

numpy is used when importable, because benchmarks push hundreds of thousands of 1536-component
vectors through the server. The standard-library path agrees with it to within 1e-6 per component.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import sys
from array import array
from collections.abc import Sequence
from typing import Any

from embedlimit.testing._models import DEFAULT_MODELS

try:
    import numpy

    HAVE_NUMPY = True
except ImportError:  # pragma: no cover - numpy is in the dev and fast extras
    HAVE_NUMPY = False

__all__ = ["HAVE_NUMPY", "SEED", "VectorBatch", "compute_vectors", "expected_vector"]

SEED = b"embedlimit.testing vector v1\x00"
"""Bytes hashed in front of every text; changing them changes every simulated vector."""

_UINT32_SCALE = 2.0**31


def _digest(text: str, full_dimension: int) -> bytes:
    return hashlib.shake_256(SEED + text.encode("utf-8")).digest(4 * full_dimension)


class VectorBatch:
    """The float32 vectors for the inputs of one request, one row per input, in input order."""

    def __init__(self, rows: Any, dimension: int) -> None:
        # `rows` is a (count, dimension) float32 numpy array, or a list of array("f") rows.
        self._rows = rows
        self.dimension = dimension

    def __len__(self) -> int:
        return len(self._rows)

    def float_rows(self) -> list[Any]:
        """Return the rows as orjson serialises them: numpy rows, or lists of Python floats."""
        if HAVE_NUMPY and isinstance(self._rows, numpy.ndarray):
            return list(self._rows)
        return [row.tolist() for row in self._rows]

    def base64_rows(self) -> list[str]:
        """Return each row as base64 of its little-endian float32 bytes, as OpenAI encodes them."""
        row_bytes = 4 * self.dimension
        if HAVE_NUMPY and isinstance(self._rows, numpy.ndarray) and row_bytes % 3 == 0:
            # Each row's byte length is a multiple of 3, so every row starts on a base64 group
            # boundary. One encoding of the whole array can then be cut into rows.
            encoded = base64.b64encode(_little_endian_bytes(self._rows)).decode("ascii")
            step = row_bytes // 3 * 4
            return [encoded[start : start + step] for start in range(0, len(encoded), step)]
        return [base64.b64encode(_little_endian_bytes(row)).decode("ascii") for row in self._rows]

    def row(self, index: int) -> list[float]:
        """Return one row as Python floats, each exactly a float32 value."""
        values: list[float] = [float(value) for value in self._rows[index]]
        return values


def _little_endian_bytes(row: Any) -> bytes:
    if isinstance(row, array):
        if sys.byteorder == "big":  # pragma: no cover - no big-endian test machine
            row = array("f", row)
            row.byteswap()
        data: bytes = row.tobytes()
        return data
    return bytes(row.astype("<f4", copy=False).tobytes())


def compute_vectors(
    texts: Sequence[str], full_dimension: int, dimensions: int | None = None, *, use_numpy: bool | None = None
) -> VectorBatch:
    """Compute the vectors of `texts`, shortened to `dimensions` when given.

    `use_numpy=None` picks numpy when it is importable; False forces the standard-library path.
    """
    if use_numpy is None:
        use_numpy = HAVE_NUMPY
    if use_numpy and not HAVE_NUMPY:
        raise RuntimeError("use_numpy=True needs numpy; install it or pass use_numpy=None")

    output_dimension = dimensions if dimensions is not None else full_dimension
    if use_numpy:
        return VectorBatch(_numpy_vectors(texts, full_dimension, output_dimension), output_dimension)
    rows = [_stdlib_vector(text, full_dimension, output_dimension) for text in texts]
    return VectorBatch(rows, output_dimension)


def _numpy_vectors(texts: Sequence[str], full_dimension: int, output_dimension: int) -> Any:
    raw = b"".join(_digest(text, full_dimension) for text in texts)
    words = numpy.frombuffer(raw, dtype="<u4").reshape(len(texts), full_dimension)
    values = (words.astype(numpy.float64) + 0.5) / _UINT32_SCALE - 1.0
    values /= numpy.linalg.norm(values, axis=1, keepdims=True)
    vectors = values.astype(numpy.float32)
    if output_dimension == full_dimension:
        return vectors

    shortened = vectors[:, :output_dimension].astype(numpy.float64)
    shortened /= numpy.linalg.norm(shortened, axis=1, keepdims=True)
    return shortened.astype(numpy.float32)


def _stdlib_vector(text: str, full_dimension: int, output_dimension: int) -> array[float]:
    words = struct.unpack(f"<{full_dimension}I", _digest(text, full_dimension))
    values = [(word + 0.5) / _UINT32_SCALE - 1.0 for word in words]
    vector = _normalise_to_float32(values)
    if output_dimension == full_dimension:
        return vector
    return _normalise_to_float32(list(vector[:output_dimension]))


def _normalise_to_float32(values: list[float]) -> array[float]:
    norm = math.sqrt(math.fsum(value * value for value in values))
    return array("f", [value / norm for value in values])


def expected_vector(
    text: str, model: str = "text-embedding-3-small", dimensions: int | None = None
) -> list[float]:
    """Return the vector the simulator sends for `text`, as float32-representable Python floats.

    `model` must be one of the default models (`DEFAULT_MODELS`); for a simulator configured with
    other models, use `Simulator.expected_vector`. Raises ValueError for an unknown model or a
    `dimensions` outside 1..the model's dimension.
    """
    spec = DEFAULT_MODELS.get(model)
    if spec is None:
        known = ", ".join(sorted(DEFAULT_MODELS))
        raise ValueError(f"unknown model {model!r}; expected one of {known}")
    return vector_for(text, spec.dimension, dimensions)


def vector_for(text: str, full_dimension: int, dimensions: int | None = None) -> list[float]:
    """Return the vector of one text for a model whose full vector has `full_dimension` components."""
    if dimensions is not None and not 1 <= dimensions <= full_dimension:
        raise ValueError(f"dimensions must be between 1 and {full_dimension}, got {dimensions}")
    return compute_vectors([text], full_dimension, dimensions).row(0)
