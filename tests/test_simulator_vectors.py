"""Deterministic simulated vectors: definition, numpy and standard-library paths, shortening."""

from __future__ import annotations

import base64
import hashlib
import math
import struct

import numpy
import pytest

from embedlimit.testing import expected_vector
from embedlimit.testing._vectors import SEED, compute_vectors, vector_for

TEXTS = ["hello", "world", "", "naïve café ☕", "x" * 5000, "日本語のテキスト"]


def _definition(text: str, full_dimension: int) -> list[float]:
    """The documented definition, written out independently of the module."""
    raw = hashlib.shake_256(SEED + text.encode("utf-8")).digest(4 * full_dimension)
    words = struct.unpack(f"<{full_dimension}I", raw)
    values = [(word + 0.5) / 2.0**31 - 1.0 for word in words]
    norm = math.sqrt(sum(value * value for value in values))
    return [float(numpy.float32(value / norm)) for value in values]


def test_vector_matches_definition() -> None:
    for text in TEXTS:
        assert expected_vector(text) == pytest.approx(_definition(text, 1536), abs=1e-7)


def test_vector_is_unit_length_float32() -> None:
    vector = expected_vector("hello")
    assert len(vector) == 1536
    assert math.sqrt(math.fsum(value * value for value in vector)) == pytest.approx(1.0, abs=1e-6)
    assert all(float(numpy.float32(value)) == value for value in vector)
    assert all(-1.0 < value < 1.0 for value in vector)


def test_numpy_and_stdlib_agree() -> None:
    for full_dimension, dimensions in [(1536, None), (3072, None), (1536, 256), (3072, 1)]:
        with_numpy = compute_vectors(TEXTS, full_dimension, dimensions, use_numpy=True)
        without_numpy = compute_vectors(TEXTS, full_dimension, dimensions, use_numpy=False)
        for index in range(len(TEXTS)):
            difference = numpy.abs(numpy.array(with_numpy.row(index)) - numpy.array(without_numpy.row(index)))
            assert difference.max() <= 1e-6


@pytest.mark.parametrize("dimensions", [None, 100, 1])
def test_base64_rows_agree_across_paths(dimensions: int | None) -> None:
    with_numpy = compute_vectors(TEXTS, 1536, dimensions, use_numpy=True)
    without_numpy = compute_vectors(TEXTS, 1536, dimensions, use_numpy=False)
    fast_rows, slow_rows = with_numpy.base64_rows(), without_numpy.base64_rows()
    assert len(fast_rows) == len(TEXTS)
    for index, (fast, slow) in enumerate(zip(fast_rows, slow_rows, strict=True)):
        fast_values = numpy.frombuffer(base64.b64decode(fast), dtype="<f4")
        slow_values = numpy.frombuffer(base64.b64decode(slow), dtype="<f4")
        assert fast_values.tolist() == with_numpy.row(index)
        assert numpy.abs(fast_values - slow_values).max() <= 1e-6


def test_vectors_differ_between_texts() -> None:
    first, second = expected_vector("hello"), expected_vector("hello ")
    assert numpy.dot(first, second) < 0.2


def test_vector_is_model_independent_prefix() -> None:
    small = expected_vector("hello", "text-embedding-3-small")
    ada = expected_vector("hello", "text-embedding-ada-002")
    large = expected_vector("hello", "text-embedding-3-large")
    assert small == ada
    assert len(large) == 3072
    assert expected_vector("hello", "text-embedding-3-large", 1536) == pytest.approx(small, abs=1e-6)


def test_shortened_vector_renormalises_prefix() -> None:
    full = numpy.array(expected_vector("hello"), dtype=numpy.float64)
    short = expected_vector("hello", dimensions=8)
    prefix = full[:8] / numpy.linalg.norm(full[:8])
    assert len(short) == 8
    assert short == pytest.approx(prefix.tolist(), abs=1e-7)
    assert math.sqrt(sum(value * value for value in short)) == pytest.approx(1.0, abs=1e-6)


def test_expected_vector_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        expected_vector("hello", "text-embedding-4")
    with pytest.raises(ValueError, match="between 1 and 1536"):
        expected_vector("hello", dimensions=0)
    with pytest.raises(ValueError, match="between 1 and 1536"):
        vector_for("hello", 1536, 1537)
