"""Deterministic unit vectors derived from each input text, similar for texts that share words.

A vector is a feature-hashing (count sketch) bag of words, mixed with a little noise derived from
the whole text, so that texts sharing words get a high cosine similarity and every text still gets
its own vector. The definition is fixed, so it gives the same vector with and without numpy. For a
model whose full vector has D components:

1. Features (`_features.text_features`): NFKC-normalise the text and lowercase it. Each word is a
   feature: a maximal run of letters and digits (`re`'s Unicode \\w without the underscore) outside
   the CJK scripts. A run of Han, Hiragana, Katakana or Hangul characters has no spaces, so each
   overlapping pair of its characters is a feature, or the single character for a run of one.
   A feature seen n times weighs 1 + ln(n).
2. Lexical part L, D float64 components starting at 0: each feature hashes to
   `hashlib.shake_256(SEED_FEATURE + feature.encode("utf-8")).digest(32)`, read as 8 little-endian
   uint32 `u`. Each `u` adds the feature's weight at position `(u >> 1) % D`, with a plus sign for
   an even `u` and a minus sign for an odd one. Positions of different features may coincide and
   then add up.
3. Noise part N: `hashlib.shake_256(SEED + text.encode("utf-8")).digest(4 * D)`, read as
   little-endian uint32 `u`, each mapped to `(u + 0.5) / 2**31 - 1`, scaled to unit length.
4. `v = LEXICAL_WEIGHT * L / |L| + NOISE_WEIGHT * N`, with the first term left out when L is zero
   (a text with no features, such as "" or "!?"). Scale v to unit length in float64, then round
   each component to float32.
5. For `dimensions=d`, keep the first d float32 components and scale them to unit length again in
   float64, then round to float32. OpenAI's embeddings guide describes shortening a
   text-embedding-3 vector the same way: cut it, then normalise it.

With the weights 0.9 and 0.3, two different texts with the same features and counts ("b a" and
"a b") have a cosine similarity of about 0.81 / 0.9 = 0.9. Texts with no feature in common have a
cosine of about 0, within a few times 1/sqrt(D) (0.026 for D = 1536). In between, the cosine is
about 0.9 times the cosine of the two weighted bags of words. A text without features gets N alone.
Every feature counts, common words such as "the" as much as rare ones, because the simulator has
no corpus to weigh them by.

NOTE: shortening keeps about 8 * d / D of each feature's positions. Below D / 8 (192 for 1536),
a short text may keep almost none, so cosines of shortened vectors become unreliable: at d = 16,
"b a" and "a b" can come out unrelated.

Positions depend on D, so text-embedding-3-large's first 1536 components are not
text-embedding-3-small's. Models with the same D (text-embedding-3-small and
text-embedding-ada-002) get the same vectors.

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

from embedlimit.testing._features import (
    HASHES_PER_FEATURE,
    SEED_FEATURE,
    feature_digest,
    feature_hits,
    feature_weight,
    text_features,
)
from embedlimit.testing._models import DEFAULT_MODELS

try:
    import numpy

    HAVE_NUMPY = True
except ImportError:  # pragma: no cover - numpy is in the dev and fast extras
    HAVE_NUMPY = False

__all__ = [
    "HAVE_NUMPY",
    "LEXICAL_WEIGHT",
    "NOISE_WEIGHT",
    "SEED",
    "SEED_FEATURE",
    "VectorBatch",
    "compute_vectors",
    "expected_vector",
]

SEED = b"embedlimit.testing vector v1\x00"
"""Bytes hashed in front of every text for the noise part. Changing them changes every simulated vector."""

LEXICAL_WEIGHT = 0.9
"""Weight of the unit lexical part before the final normalisation."""

NOISE_WEIGHT = 0.3
"""Weight of the unit noise part. It is small enough that shared words dominate, and large enough
that texts with the same bag of words stay apart (cosine about 0.9)."""

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
    # In place where possible, because 2048 inputs at 3072 dimensions make 50 MB float64 arrays.
    values = _numpy_noise(texts, full_dimension)
    values *= (NOISE_WEIGHT / _numpy_row_norms(values))[:, None]

    lexical = _numpy_lexical(texts, full_dimension)
    lexical_norms = _numpy_row_norms(lexical)
    scale = numpy.zeros_like(lexical_norms)
    numpy.divide(LEXICAL_WEIGHT, lexical_norms, out=scale, where=lexical_norms > 0)
    lexical *= scale[:, None]
    values += lexical

    values /= _numpy_row_norms(values)[:, None]
    vectors = values.astype(numpy.float32)
    if output_dimension == full_dimension:
        return vectors

    shortened = vectors[:, :output_dimension].astype(numpy.float64)
    shortened /= _numpy_row_norms(shortened)[:, None]
    return shortened.astype(numpy.float32)


def _numpy_row_norms(values: Any) -> Any:
    # einsum sums the squares without the squared copy that numpy.linalg.norm makes.
    return numpy.sqrt(numpy.einsum("ij,ij->i", values, values))


def _numpy_noise(texts: Sequence[str], full_dimension: int) -> Any:
    """Return the noise parts before scaling to unit length: (u + 0.5) / 2**31 - 1 for each uint32 u."""
    raw = b"".join(_digest(text, full_dimension) for text in texts)
    words = numpy.frombuffer(raw, dtype="<u4").reshape(len(texts), full_dimension)
    values = words.astype(numpy.float64)
    values += 0.5
    values /= _UINT32_SCALE
    values -= 1.0
    return values


def _numpy_lexical(texts: Sequence[str], full_dimension: int) -> Any:
    """Build the lexical parts of all texts with one bincount over the batch's feature hashes."""
    digests: list[bytes] = []
    counts: list[int] = []
    features_per_text: list[int] = []
    for text in texts:
        features = text_features(text)
        digests.extend(map(feature_digest, features))
        counts.extend(features.values())
        features_per_text.append(len(features))

    words = numpy.frombuffer(b"".join(digests), dtype="<u4").reshape(-1, HASHES_PER_FEATURE)
    positions = (words >> 1) % full_dimension
    signs = 1.0 - 2.0 * (words & 1)
    weights = 1.0 + numpy.log(numpy.asarray(counts, dtype=numpy.float64))

    # int64 offsets, because 2048 texts times a custom model's dimension can pass 2**31.
    rows = numpy.repeat(numpy.arange(len(texts), dtype=numpy.int64), features_per_text)
    flat_positions = (rows[:, None] * full_dimension + positions).ravel()
    size = len(texts) * full_dimension
    lexical = numpy.bincount(flat_positions, weights=(signs * weights[:, None]).ravel(), minlength=size)

    # A batch without any feature gives no weights, and bincount then returns int64 zeros.
    return lexical.astype(numpy.float64, copy=False).reshape(len(texts), full_dimension)


def _stdlib_vector(text: str, full_dimension: int, output_dimension: int) -> array[float]:
    lexical = _stdlib_lexical(text, full_dimension)
    lexical_norm = math.sqrt(math.fsum(value * value for value in lexical))
    scale = LEXICAL_WEIGHT / lexical_norm if lexical_norm > 0 else 0.0

    noise = _stdlib_noise(text, full_dimension)
    pairs = zip(lexical, noise, strict=True)
    values = [scale * lexical_value + NOISE_WEIGHT * noise_value for lexical_value, noise_value in pairs]
    vector = _normalise_to_float32(values)
    if output_dimension == full_dimension:
        return vector
    return _normalise_to_float32(list(vector[:output_dimension]))


def _stdlib_noise(text: str, full_dimension: int) -> list[float]:
    words = struct.unpack(f"<{full_dimension}I", _digest(text, full_dimension))
    values = [(word + 0.5) / _UINT32_SCALE - 1.0 for word in words]
    norm = math.sqrt(math.fsum(value * value for value in values))
    return [value / norm for value in values]


def _stdlib_lexical(text: str, full_dimension: int) -> list[float]:
    lexical = [0.0] * full_dimension
    for feature, count in text_features(text).items():
        weight = feature_weight(count)
        for position, sign in feature_hits(feature, full_dimension):
            lexical[position] += sign * weight
    return lexical


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
