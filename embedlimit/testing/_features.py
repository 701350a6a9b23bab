"""Words and CJK bigrams of a text, and their hashed positions in a simulated vector.

`_vectors` states the full definition. This module implements its lexical steps: which features
a text has, with what weight, and which signed positions each feature adds to.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import struct
import unicodedata
from collections import Counter

__all__ = [
    "FEATURE_CACHE_SIZE",
    "HASHES_PER_FEATURE",
    "SEED_FEATURE",
    "feature_digest",
    "feature_hits",
    "feature_weight",
    "text_features",
]

SEED_FEATURE = b"embedlimit.testing feature v1\x00"
"""Bytes hashed in front of every feature. Changing them moves every feature's positions."""

HASHES_PER_FEATURE = 8
"""Signed positions per feature. More positions make hash collisions between features matter less."""

FEATURE_CACHE_SIZE = 1 << 16
"""Features whose digests stay cached. An entry with its key takes about 200 bytes, so about 13 MB when full."""

# Han (with the ideographic iteration and number marks), Hiragana, Katakana (with halfwidth forms)
# and Hangul (jamo, compatibility jamo, syllables). Punctuation inside these blocks, such as the
# katakana middle dot, is left out so that it separates runs as other punctuation does.
_CJK_RANGES = (
    "\u3005\u3007\u3021-\u3029\u3038-\u303b\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U000323af"
    "\u3041-\u3096\u309d-\u309f"
    "\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9d"
    "\u1100-\u11ff\u3131-\u318e\ua960-\ua97c\uac00-\ud7a3\ud7b0-\ud7fb\uffa0-\uffdc"
)
_CJK_RUN = re.compile(f"[{_CJK_RANGES}]+")

# A word is a run of letters and digits, as `re`'s Unicode \w matches them. The underscore is
# left out so that snake_case names split into their words, and so are the CJK scripts, which
# have no spaces between words.
# NOTE: combining marks (Unicode categories Mn and Mc) are not \w, so they split words: in
# Devanagari, Thai and other scripts written with vowel signs, a word becomes several features
# and its vowel signs drop out. NFKC composes Latin accents first, so Latin words stay whole.
_WORD = re.compile(f"[^\\W_{_CJK_RANGES}]+")
_ASCII_WORD = re.compile("[a-z0-9]+")

_DIGEST_FORMAT = struct.Struct(f"<{HASHES_PER_FEATURE}I")


def text_features(text: str) -> Counter[str]:
    """Count the features of `text`: its words, and the character bigrams of its CJK runs."""
    folded = unicodedata.normalize("NFKC", text).lower()
    if folded.isascii():
        # The same words as _WORD finds, about twice as fast, and no CJK runs are possible.
        return Counter(_ASCII_WORD.findall(folded))

    features = _WORD.findall(folded)
    for run in _CJK_RUN.findall(folded):
        features.extend(_cjk_bigrams(run))
    return Counter(features)


def feature_weight(count: int) -> float:
    """Return 1 + ln(count), the weight of a feature seen `count` times, so repeats add less and less."""
    return 1.0 + math.log(count)


def _cjk_bigrams(run: str) -> list[str]:
    """Split a CJK run into overlapping character pairs, or return the single character of a 1-run."""
    if len(run) == 1:
        return [run]
    return [run[start : start + 2] for start in range(len(run) - 1)]


@functools.lru_cache(maxsize=FEATURE_CACHE_SIZE)
def feature_digest(feature: str) -> bytes:
    """Return the hash of `feature`, HASHES_PER_FEATURE little-endian uint32 values, one per signed position.

    The digest does not depend on the dimension, so one cache serves every model. The numpy path
    joins the digests of a whole batch and turns them into positions with a few array operations.
    """
    return hashlib.shake_256(SEED_FEATURE + feature.encode("utf-8")).digest(4 * HASHES_PER_FEATURE)


def feature_hits(feature: str, full_dimension: int) -> list[tuple[int, float]]:
    """Return the feature's (position, sign) pairs, with position (u >> 1) % D and sign -1.0 for an odd u."""
    words = _DIGEST_FORMAT.unpack(feature_digest(feature))
    return [((word >> 1) % full_dimension, -1.0 if word & 1 else 1.0) for word in words]
