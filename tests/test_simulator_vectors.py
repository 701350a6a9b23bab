"""Deterministic simulated vectors: features, definition, similarity, numpy and standard-library paths."""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections import Counter

import numpy
import pytest

from embedlimit.testing import expected_vector
from embedlimit.testing._features import FEATURE_CACHE_SIZE, feature_digest, text_features
from embedlimit.testing._vectors import SEED, SEED_FEATURE, compute_vectors, vector_for

TEXTS = [
    "hello",
    "world",
    "",
    "!?",
    "naïve café ☕",
    "x" * 5000,
    "a b a b a",
    "日本語のテキスト",
    "東京タワー and 서울",
    "fast web server with TLS support",
]

FEATURE_CASES = [
    ("Hello, World!", {"hello": 1, "world": 1}),
    ("a b a b a", {"a": 3, "b": 2}),
    ("http_server v2.0", {"http": 1, "server": 1, "v2": 1, "0": 1}),
    ("naïve café", {"naïve": 1, "café": 1}),
    ("nai\u0308ve", {"naïve": 1}),
    ("ＡＢＣ ﬁle", {"abc": 1, "file": 1}),
    ("日本語のテキスト", {"日本": 1, "本語": 1, "語の": 1, "のテ": 1, "テキ": 1, "キス": 1, "スト": 1}),
    ("中 文", {"中": 1, "文": 1}),
    ("東京タワー and 서울", {"東京": 1, "京タ": 1, "タワ": 1, "ワー": 1, "and": 1, "서울": 1}),
    ("・テスト・テスト", {"テス": 2, "スト": 2}),
    ("", {}),
    ("!? ☕ -- _", {}),
]


def _cosine(first: str, second: str, model: str = "text-embedding-3-small") -> float:
    return float(numpy.dot(expected_vector(first, model), expected_vector(second, model)))


def _unit(values: list[float]) -> list[float]:
    norm = math.sqrt(math.fsum(value * value for value in values))
    return [value / norm for value in values]


def _definition(features: dict[str, int], text: str, full_dimension: int) -> list[float]:
    """The documented definition for the given feature counts, written out independently of the module."""
    lexical = [0.0] * full_dimension
    for feature, count in features.items():
        digest = hashlib.shake_256(SEED_FEATURE + feature.encode("utf-8")).digest(32)
        for (word,) in struct.iter_unpack("<I", digest):
            sign = -1.0 if word % 2 else 1.0
            lexical[(word // 2) % full_dimension] += sign * (1.0 + math.log(count))

    raw = hashlib.shake_256(SEED + text.encode("utf-8")).digest(4 * full_dimension)
    noise = _unit([(word + 0.5) / 2.0**31 - 1.0 for (word,) in struct.iter_unpack("<I", raw)])
    if any(lexical):
        lexical = _unit(lexical)
    pairs = zip(lexical, noise, strict=True)
    values = [0.9 * lexical_value + 0.3 * noise_value for lexical_value, noise_value in pairs]
    return [float(numpy.float32(value)) for value in _unit(values)]


@pytest.mark.parametrize(("text", "expected"), FEATURE_CASES)
def test_text_features(text: str, expected: dict[str, int]) -> None:
    assert text_features(text) == Counter(expected)


def test_ascii_features_match_unicode_path() -> None:
    # Every ASCII character sits between letters, and the trailing "é" sends the text down the Unicode path.
    ascii_text = "".join(f"{chr(code)}w{code}" for code in range(128))
    unicode_text = ascii_text + " é"
    assert text_features(unicode_text) == text_features(ascii_text) + Counter({"é": 1})


@pytest.mark.parametrize(("text", "features"), FEATURE_CASES)
def test_vector_matches_definition(text: str, features: dict[str, int]) -> None:
    assert expected_vector(text) == pytest.approx(_definition(features, text, 1536), abs=1e-7)


def test_large_vector_matches_definition() -> None:
    vector = expected_vector("Hello, World!", "text-embedding-3-large")
    assert vector == pytest.approx(_definition({"hello": 1, "world": 1}, "Hello, World!", 3072), abs=1e-7)


def test_vector_is_unit_length_float32() -> None:
    for text in TEXTS:
        vector = expected_vector(text)
        assert len(vector) == 1536
        assert math.sqrt(math.fsum(value * value for value in vector)) == pytest.approx(1.0, abs=1e-6)
        assert all(float(numpy.float32(value)) == value for value in vector)
        assert all(-1.0 < value < 1.0 for value in vector)


def test_numpy_and_stdlib_agree() -> None:
    for full_dimension, dimensions in [(1536, None), (3072, None), (1536, 256), (3072, 1), (16, None), (1, None)]:
        with_numpy = compute_vectors(TEXTS, full_dimension, dimensions, use_numpy=True)
        without_numpy = compute_vectors(TEXTS, full_dimension, dimensions, use_numpy=False)
        for index in range(len(TEXTS)):
            difference = numpy.abs(numpy.array(with_numpy.row(index)) - numpy.array(without_numpy.row(index)))
            assert difference.max() <= 1e-6


def test_numpy_batch_matches_single_texts() -> None:
    batch = compute_vectors(TEXTS, 1536, use_numpy=True)
    for index, text in enumerate(TEXTS):
        assert batch.row(index) == compute_vectors([text], 1536, use_numpy=True).row(0)


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


def test_same_words_any_order_are_close() -> None:
    for model in ["text-embedding-3-small", "text-embedding-3-large"]:
        cosine = _cosine("the quick brown fox jumps", "jumps fox brown the quick", model)
        assert cosine > 0.8
        assert cosine < 0.95


def test_same_bag_keeps_distinct_vectors() -> None:
    assert expected_vector("hello") != expected_vector("hello ")
    assert expected_vector("hello") != expected_vector("Hello!")
    assert _cosine("hello", "hello ") == pytest.approx(0.9, abs=0.03)


def test_query_is_closer_to_shared_words() -> None:
    query = "fast web server with TLS support"
    near = _cosine(query, "HTTP web server with TLS")
    far = _cosine(query, "audio editor for sound files")
    assert near > far
    assert near > 0.5


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("fast web server with TLS support", "audio editor for sound files"),
        ("hello", "world"),
        ("graph database", "rate limiter"),
        ("日本語のテキスト", "한국어 문서"),
        ("", "!?"),
        ("", "hello"),
    ],
)
def test_disjoint_texts_are_near_orthogonal(first: str, second: str) -> None:
    assert abs(_cosine(first, second)) < 0.2


def test_cjk_shared_characters_are_closer() -> None:
    shared = _cosine("日本語のテキスト", "日本語の文章")
    disjoint = _cosine("日本語のテキスト", "中国历史书籍")
    assert shared > disjoint
    assert shared > 0.3


def test_featureless_text_gets_noise_alone() -> None:
    for text in ["", "!?", "☕ --"]:
        raw = hashlib.shake_256(SEED + text.encode("utf-8")).digest(4 * 1536)
        noise = _unit([(word + 0.5) / 2.0**31 - 1.0 for (word,) in struct.iter_unpack("<I", raw)])
        assert expected_vector(text) == pytest.approx(noise, abs=1e-7)
    assert abs(_cosine("!?", "?!")) < 0.2


def test_models_with_same_dimension_share_vectors() -> None:
    small = expected_vector("hello", "text-embedding-3-small")
    ada = expected_vector("hello", "text-embedding-ada-002")
    large = expected_vector("hello", "text-embedding-3-large")
    assert small == ada
    assert len(large) == 3072


def test_shortened_vector_renormalises_prefix() -> None:
    full = numpy.array(expected_vector("hello"), dtype=numpy.float64)
    short = expected_vector("hello", dimensions=8)
    prefix = full[:8] / numpy.linalg.norm(full[:8])
    assert len(short) == 8
    assert short == pytest.approx(prefix.tolist(), abs=1e-7)
    assert math.sqrt(sum(value * value for value in short)) == pytest.approx(1.0, abs=1e-6)


def test_shortened_vectors_keep_similarity() -> None:
    query = expected_vector("fast web server with TLS support", dimensions=256)
    near = expected_vector("HTTP web server with TLS", dimensions=256)
    far = expected_vector("audio editor for sound files", dimensions=256)
    assert float(numpy.dot(query, near)) > 0.3
    assert abs(float(numpy.dot(query, far))) < 0.2


def test_feature_cache_is_bounded() -> None:
    feature_digest("hello")
    info = feature_digest.cache_info()
    assert info.maxsize == FEATURE_CACHE_SIZE
    assert info.currsize <= FEATURE_CACHE_SIZE


def test_expected_vector_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        expected_vector("hello", "text-embedding-4")
    with pytest.raises(ValueError, match="between 1 and 1536"):
        expected_vector("hello", dimensions=0)
    with pytest.raises(ValueError, match="between 1 and 1536"):
        vector_for("hello", 1536, 1537)
