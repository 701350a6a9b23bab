"""Smoke tests proving that the test server is a real Neo4j with vector indexes and APOC."""

from __future__ import annotations

import math

import neo4j
import pytest

pytestmark = [pytest.mark.neo4j, pytest.mark.timeout(180)]

DIMENSIONS = 1536


def _unit_vector(seed: int) -> list[float]:
    raw = [math.sin(seed * 7.0 + i * 0.37) for i in range(DIMENSIONS)]
    norm = math.sqrt(sum(value * value for value in raw))
    return [value / norm for value in raw]


async def test_vector_index_round_trip(neo4j_driver: neo4j.AsyncDriver) -> None:
    vectors = {name: _unit_vector(seed) for seed, name in enumerate(["alpha", "beta", "gamma"])}
    await neo4j_driver.execute_query(
        "UNWIND $rows AS row CREATE (d:Doc {name: row.name}) "
        "WITH d, row CALL db.create.setNodeVectorProperty(d, 'embedding', row.vector)",
        rows=[{"name": name, "vector": vector} for name, vector in vectors.items()],
    )
    await neo4j_driver.execute_query(
        "CREATE VECTOR INDEX doc_embedding IF NOT EXISTS FOR (d:Doc) ON d.embedding "
        "OPTIONS {indexConfig: {`vector.dimensions`: $dimensions, `vector.similarity_function`: 'cosine'}}",
        dimensions=DIMENSIONS,
    )
    await neo4j_driver.execute_query("CALL db.awaitIndexes(120)")

    records, _, _ = await neo4j_driver.execute_query(
        "CALL db.index.vector.queryNodes('doc_embedding', 2, $query) YIELD node, score "
        "RETURN node.name AS name, score, size(node.embedding) AS size",
        query=vectors["beta"],
    )
    assert records[0]["name"] == "beta"
    assert records[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert records[0]["size"] == DIMENSIONS
    assert len(records) == 2


async def test_vector_index_online(neo4j_driver: neo4j.AsyncDriver) -> None:
    await neo4j_driver.execute_query(
        "CREATE VECTOR INDEX doc_embedding IF NOT EXISTS FOR (d:Doc) ON d.embedding "
        "OPTIONS {indexConfig: {`vector.dimensions`: 4, `vector.similarity_function`: 'cosine'}}"
    )
    await neo4j_driver.execute_query("CALL db.awaitIndexes(120)")
    records, _, _ = await neo4j_driver.execute_query(
        "SHOW VECTOR INDEXES YIELD name, state WHERE name = 'doc_embedding' RETURN state"
    )
    assert [record["state"] for record in records] == ["ONLINE"]


async def test_apoc_core_procedure(neo4j_driver: neo4j.AsyncDriver) -> None:
    records, _, _ = await neo4j_driver.execute_query("RETURN apoc.text.join(['a', 'b'], '-') AS joined")
    assert records[0]["joined"] == "a-b"


async def test_apoc_extended_openai_registered(neo4j_driver: neo4j.AsyncDriver) -> None:
    records, _, _ = await neo4j_driver.execute_query(
        "SHOW PROCEDURES YIELD name WHERE name = 'apoc.ml.openai.embedding' RETURN name"
    )
    assert [record["name"] for record in records] == ["apoc.ml.openai.embedding"]
