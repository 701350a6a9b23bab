"""Bad input: each kind of node text gets its documented outcome, and none stops the run.

Outcomes: "embedded" means the node's vector is the simulator's vector for its exact text;
"truncated" means a vector was stored but the full text never reached the API, because it was
cut to the model's 8,192-token input limit; "dead-lettered" means no vector and a dead-letter
entry whose reason contains the given words.

Lone surrogates cannot reach the backfill from Neo4j: the Python driver raises
UnicodeEncodeError for a parameter that holds one, and a Cypher literal "\\uD800" is stored but
sent back over Bolt as "?". So the graph case checks the "?" text, and the library case checks
`embed_stream` with a lone surrogate directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import neo4j
import orjson
import pytest

from embedlimit._backfill import DeadLetters, backfill
from embedlimit._embedder import Embedder
from embedlimit._neo4j import GraphTarget, NodeText, TextSpec
from embedlimit._results import EmbeddingResult
from embedlimit.testing import Simulator, expected_vector
from tests.reliability_support import KEY, MODEL, read_dead_letters

pytestmark = [pytest.mark.neo4j, pytest.mark.timeout(60)]

LONG_TEXT = "word " * 20_000
# (case, value of the `body` property or None for a missing one, outcome, words in the reason)
CASES: list[tuple[str, Any, str, str]] = [
    ("empty", "", "dead-lettered", "empty or only whitespace"),
    ("whitespace", " \t\n  ", "dead-lettered", "empty or only whitespace"),
    ("missing", None, "dead-lettered", "text is None"),
    ("integer", 42, "dead-lettered", "type int"),
    ("float", 2.5, "dead-lettered", "type float"),
    ("list", ["a", "b"], "dead-lettered", "type list"),
    ("long", LONG_TEXT, "truncated", ""),
    ("zero width", "zero\u200bwidth\u200djoiner\u2060", "embedded", ""),
    ("zero width only", "\u200b", "embedded", ""),
    ("right to left", "\u05e9\u05dc\u05d5\u05dd \u202eevil\u202c \u0645\u0631\u062d\u0628\u0627", "embedded", ""),
    ("chinese", "\u4f60\u597d\uff0c\u4e16\u754c", "embedded", ""),
    ("japanese", "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c\u3002\u30c6\u30b9\u30c8", "embedded", ""),
    ("emoji", "\U0001f44d\U0001f3fd family \U0001f468\u200d\U0001f469\u200d\U0001f467", "embedded", ""),
    ("duplicate a", "the same text twice", "embedded", ""),
    ("duplicate b", "the same text twice", "embedded", ""),
    ("plain", "an ordinary description", "embedded", ""),
]


async def _create_cases(driver: neo4j.AsyncDriver) -> None:
    for uid, (case, value, _, _) in enumerate(CASES):
        if value is None:
            await driver.execute_query("CREATE (:Doc {uid: $uid, case: $case})", uid=uid, case=case)
        else:
            await driver.execute_query("CREATE (:Doc {uid: $uid, case: $case, body: $body})",
                                       uid=uid, case=case, body=value)
    # Neo4j stores a lone surrogate from a Cypher escape and sends it back as "?".
    await driver.execute_query("CREATE (:Doc {uid: 1000, case: 'lone surrogate', body: 'a\\uD800b'})")


async def _stored(driver: neo4j.AsyncDriver) -> dict[str, dict[str, Any]]:
    records, _, _ = await driver.execute_query(
        "MATCH (d:Doc) RETURN d.case AS case, elementId(d) AS id, d.body AS body, d.embedding AS embedding"
    )
    return {record["case"]: dict(record) for record in records}


async def test_bad_inputs_get_outcomes(neo4j_driver: neo4j.AsyncDriver, tmp_path: Path) -> None:
    await _create_cases(neo4j_driver)
    dead_letter = tmp_path / "dead.jsonl"

    async with Simulator(keys=[KEY]) as sim:
        async with Embedder(MODEL, api_key=KEY, base_url=sim.base_url, dimensions=64) as embedder:
            report = await backfill(neo4j_driver, embedder, "Doc", "body", key_property="uid",
                                    dead_letter_path=dead_letter)
        long_sent_whole = sim.embed_count(LONG_TEXT)
        rejected_by_server = sim.stats().requests_by_status.get(400, 0)

    stored = await _stored(neo4j_driver)
    reasons = {entry["node_id"]: str(entry["reason"]) for entry in read_dead_letters(dead_letter)}
    assert report.complete
    assert report.embedded + report.failed == len(CASES) + 1
    assert long_sent_whole == 0
    assert rejected_by_server == 0
    for case, value, outcome, words in CASES:
        node = stored[case]
        if outcome == "dead-lettered":
            assert node["embedding"] is None, case
            assert words in reasons.get(node["id"], ""), case
        elif outcome == "truncated":
            assert len(node["embedding"]) == 64, case
        else:
            assert node["embedding"] == pytest.approx(expected_vector(value, MODEL, 64), abs=1e-6), case
    assert stored["lone surrogate"]["body"] == "a?b"
    assert stored["lone surrogate"]["embedding"] == pytest.approx(expected_vector("a?b", MODEL, 64), abs=1e-6)


async def test_stream_rejects_lone_surrogate() -> None:
    items = [("bad", "a\ud800b"), ("good", "a b")]
    async with Simulator(keys=[KEY]) as sim, Embedder(MODEL, api_key=KEY, base_url=sim.base_url) as embedder:
        results = {result.key: result async for result in embedder.embed_stream(items)}

    assert results["bad"].vector is None
    assert "lone surrogate" in str(results["bad"].reason)
    assert results["good"].vector is not None


def test_dead_letters_list_node_once(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    node = NodeText("4:db:1", 1, "")
    result: EmbeddingResult[NodeText] = EmbeddingResult(node, None, None)
    for _ in range(2):
        letters = DeadLetters(path)
        letters.add(node, result)
        letters.close()

    assert len(read_dead_letters(path)) == 1
    assert letters.count == 1


def test_dead_letters_skip_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    path.write_bytes(b'{"node_id": "4:db:1"}\n{"node_id": "4:d')
    node = NodeText("4:db:2", 2, "")

    letters = DeadLetters(path)
    letters.add(node, EmbeddingResult(node, None, None))
    letters.close()

    lines = path.read_bytes().splitlines()
    assert len(lines) == 3
    assert orjson.loads(lines[2])["node_id"] == "4:db:2"


def test_dead_letters_keep_other_targets(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    node = NodeText("4:db:1", 1, "")
    result: EmbeddingResult[NodeText] = EmbeddingResult(node, None, None)
    for text_property in ("descripton", "description", "description"):
        letters = DeadLetters(path, GraphTarget("Package", TextSpec(property_name=text_property)))
        letters.add(node, result)
        letters.close()

    entries = read_dead_letters(path)
    assert [entry["text_property"] for entry in entries] == ["descripton", "description"]


def test_dead_letters_file_created_lazily(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"

    DeadLetters(path).close()

    assert not path.exists()
