"""The backfill's Neo4j side against a real server: keyset pages, vector writes, the vector index."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator

import neo4j
import pytest

from embedlimit._errors import ConfigurationError
from embedlimit._neo4j import (
    GraphTarget,
    NodeSource,
    TextSpec,
    VectorRow,
    VectorSink,
    ensure_vector_index,
    find_vector_index,
    text_hash,
)
from tests.neo4j.server import Neo4jTestServer

pytestmark = [pytest.mark.neo4j, pytest.mark.timeout(120)]


async def _create_docs(driver: neo4j.AsyncDriver, count: int) -> None:
    await driver.execute_query(
        "UNWIND range(0, $count - 1) AS i "
        "CREATE (:Doc {uid: i, title: 'title ' + i, body: 'body ' + i})",
        count=count,
    )


async def _collect(source: NodeSource) -> list[list[str]]:
    pages: list[list[str]] = []
    async for page in source.pages():
        pages.append([str(node.text) for node in page])
    return pages


@pytest.fixture
async def docs(neo4j_driver: neo4j.AsyncDriver) -> neo4j.AsyncDriver:
    await _create_docs(neo4j_driver, 25)
    return neo4j_driver


@pytest.mark.parametrize("key_property", [None, "uid"])
async def test_source_pages_every_node_once(docs: neo4j.AsyncDriver, key_property: str | None) -> None:
    target = GraphTarget("Doc", TextSpec(property_name="body"), key_property=key_property)

    pages = await _collect(NodeSource(docs, target, page_size=10))

    assert [len(page) for page in pages] == [10, 10, 5]
    texts = [text for page in pages for text in page]
    assert sorted(texts) == sorted(f"body {i}" for i in range(25))


async def test_source_skips_nodes_with_vector(docs: neo4j.AsyncDriver) -> None:
    await docs.execute_query("MATCH (d:Doc) WHERE d.uid < 20 SET d.embedding = [1.0, 0.0]")
    target = GraphTarget("Doc", TextSpec(property_name="body"), key_property="uid")
    source = NodeSource(docs, target, page_size=10)

    pages = await _collect(source)

    assert pages == [[f"body {i}" for i in range(20, 25)]]
    assert await source.count() == 5


async def test_source_template_and_where(docs: neo4j.AsyncDriver) -> None:
    target = GraphTarget("Doc", TextSpec(template="{title}: {body} {missing}"), key_property="uid",
                         where="n.uid % 5 = 0")

    pages = await _collect(NodeSource(docs, target, page_size=100))

    assert pages == [[f"title {i}: body {i} " for i in range(0, 25, 5)]]


async def test_source_refresh_stale_by_hash(docs: neo4j.AsyncDriver) -> None:
    target = GraphTarget("Doc", TextSpec(property_name="body"), key_property="uid", hash_property="embedding_hash")
    await docs.execute_query(
        "MATCH (d:Doc) SET d.embedding = [1.0], d.embedding_hash = CASE WHEN d.uid = 3 THEN 'old' ELSE $h END",
        h=None,
    )
    for uid in range(25):
        if uid != 3:
            await docs.execute_query("MATCH (d:Doc {uid: $uid}) SET d.embedding_hash = $hash",
                                     uid=uid, hash=text_hash(f"body {uid}"))

    pages = await _collect(NodeSource(docs, target, page_size=7, refresh_stale=True))

    assert pages == [["body 3"]]


def test_target_rejects_backtick_names() -> None:
    with pytest.raises(ConfigurationError, match="invalid label 'Doc`"):
        GraphTarget("Doc`) DETACH DELETE n //", TextSpec(property_name="body"))
    with pytest.raises(ConfigurationError, match="exactly one of text_property and text_template"):
        TextSpec(property_name="a", template="{b}")


async def test_sink_writes_float32_vectors(docs: neo4j.AsyncDriver) -> None:
    target = GraphTarget("Doc", TextSpec(property_name="body"), key_property="uid", model="m-1",
                         model_property="embedding_model", hash_property="embedding_hash")
    nodes = [node async for page in NodeSource(docs, target, page_size=5).pages() for node in page][:3]
    vector = [1 / 3, 2 / 3, 2 / 3]
    rows = [VectorRow(node.element_id, vector, text_hash(str(node.text))) for node in nodes]

    written = await VectorSink(docs, target).write(rows)

    assert written == 3
    records, _, _ = await docs.execute_query(
        "MATCH (d:Doc) WHERE d.embedding IS NOT NULL "
        "RETURN d.embedding AS embedding, d.embedding_model AS model, d.embedding_hash AS hash, d.body AS body"
    )
    assert len(records) == 3
    for record in records:
        assert record["model"] == "m-1"
        assert record["hash"] == text_hash(record["body"])
        assert record["embedding"][0] != 1 / 3  # stored as float32, so the float64 value differs
        assert math.isclose(record["embedding"][0], 1 / 3, rel_tol=1e-7)


@pytest.fixture(scope="module")
def small_transaction_server() -> Iterator[str]:
    """A second test server whose transactions may use at most 4 MiB, so a large batch fails."""
    if os.environ.get("NEO4J_URI"):
        pytest.skip("needs a test server with a small transaction memory limit; NEO4J_URI is set")
    with Neo4jTestServer(java_options=[f"-Dlauncher.transactionMaxBytes={4 * 1024 * 1024}"]) as server:
        assert server.uri is not None
        yield server.uri


@pytest.mark.timeout(180)
async def test_sink_splits_batch_over_memory_limit(small_transaction_server: str) -> None:
    async with neo4j.AsyncGraphDatabase.driver(small_transaction_server) as driver:
        await _create_docs(driver, 1000)
        target = GraphTarget("Doc", TextSpec(property_name="body"), key_property="uid")
        nodes = [node async for page in NodeSource(driver, target, page_size=1000).pages() for node in page]
        rows = [VectorRow(node.element_id, [0.5] * 1536, "h") for node in nodes]

        written = await VectorSink(driver, target).write(rows)

        assert written == 1000
        records, _, _ = await driver.execute_query(
            "MATCH (d:Doc) WHERE size(d.embedding) = 1536 RETURN count(d) AS n"
        )
        assert records[0]["n"] == 1000


async def test_index_created_then_dimension_mismatch(docs: neo4j.AsyncDriver) -> None:
    target = GraphTarget("Doc", TextSpec(property_name="body"))

    index = await ensure_vector_index(docs, target, 8)

    assert index.dimensions == 8
    assert index.state == "ONLINE"
    assert await ensure_vector_index(docs, target, 8) == index
    with pytest.raises(ConfigurationError, match="has 8 dimensions but the model returns 1536"):
        await ensure_vector_index(docs, target, 1536)
    assert await find_vector_index(docs, GraphTarget("Other", TextSpec(property_name="body"))) is None


async def test_sink_debug_log_omits_vectors(docs: neo4j.AsyncDriver, caplog: pytest.LogCaptureFixture) -> None:
    target = GraphTarget("Doc", TextSpec(property_name="body"), key_property="uid")
    nodes = [node async for page in NodeSource(docs, target, page_size=5).pages() for node in page][:2]
    rows = [VectorRow(node.element_id, [0.123456789] * 8, "h") for node in nodes]

    with caplog.at_level(logging.DEBUG, logger="neo4j"):
        await VectorSink(docs, target).write(rows)

    run_lines = [record.getMessage() for record in caplog.records if "C: RUN" in record.getMessage()]
    assert any("<2 rows>" in line for line in run_lines)
    assert not any("0.123456789" in record.getMessage() for record in caplog.records)
