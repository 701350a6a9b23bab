"""Neo4j restart mid-run: a dedicated server is stopped and started again on the same store.

The backfill waits while the server is away, reconnects within its bounded retries and finishes
with every node embedded. The test needs its own server, so it is skipped when NEO4J_URI points
the suite at the user's server.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest

from embedlimit._backfill import backfill
from embedlimit._embedder import Embedder
from embedlimit._neo4j import GraphTarget, NodeSource, TextSpec
from embedlimit.testing import Simulator
from tests.neo4j.server import Neo4jTestServer
from tests.reliability_support import KEY, LABEL, MODEL, TEMPLATE, check_doc_vectors, create_docs, wait_for_vectors

pytestmark = [
    pytest.mark.neo4j,
    pytest.mark.skipif(bool(os.environ.get("NEO4J_URI")), reason="needs a test server it can stop and start"),
]

NODES = 3000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def restartable_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jTestServer]:
    """A test server on a fixed port and data folder, so that a restart keeps its URI and graph."""
    server = Neo4jTestServer(port=_free_port(), data_dir=tmp_path_factory.mktemp("neo4j-data"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _restart(server: Neo4jTestServer) -> None:
    await asyncio.to_thread(server.stop)
    await asyncio.to_thread(server.start)


@pytest.mark.timeout(240)
async def test_backfill_survives_neo4j_restart(restartable_server: Neo4jTestServer, tmp_path: Path) -> None:
    assert restartable_server.uri is not None
    async with neo4j.AsyncGraphDatabase.driver(restartable_server.uri) as driver:
        await driver.execute_query("MATCH (n) DETACH DELETE n")
        await create_docs(driver, NODES)
        # 300 requests per minute of 20 inputs: the run lasts about 30 s, long enough to span a restart.
        async with Simulator(rpm=300, tpm=10_000_000, keys=[KEY]) as sim, Embedder(
            MODEL, api_key=KEY, base_url=sim.base_url, dimensions=64, max_inputs_per_request=20,
            requests_per_minute=300,
        ) as embedder:
            run = asyncio.create_task(backfill(
                driver, embedder, LABEL, None, text_template=TEMPLATE.replace("\\n", "\n"), key_property="uid",
                batch_size=50, page_size=200, dead_letter_path=tmp_path / "dead.jsonl",
            ))
            await wait_for_vectors(driver, 300)
            await _restart(restartable_server)
            report = await asyncio.wait_for(run, 180)

        assert report.complete
        assert report.embedded == NODES
        check = await check_doc_vectors(driver, dimensions=64)
    assert check.missing == []
    assert check.wrong == []


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_source_read_retries_when_server_away(restartable_server: Neo4jTestServer) -> None:
    assert restartable_server.uri is not None
    async with neo4j.AsyncGraphDatabase.driver(restartable_server.uri) as driver:
        await driver.execute_query("MATCH (n) DETACH DELETE n")
        await create_docs(driver, 10)
        source = NodeSource(driver, GraphTarget(LABEL, TextSpec(property_name="title"), key_property="uid"))
        await asyncio.to_thread(restartable_server.stop)
        restart = asyncio.create_task(asyncio.to_thread(restartable_server.start))
        try:
            pages = [page async for page in source.pages()]
        finally:
            await restart

    assert sum(len(page) for page in pages) == 10
