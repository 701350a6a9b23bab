"""Shared fixtures: the Neo4j test server, a clean graph per test, and an async driver."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import neo4j
import pytest

from tests.neo4j.server import Neo4jTestServer


@dataclass(frozen=True)
class Neo4jTarget:
    """Where the tests' Neo4j listens, and the credentials to reach it."""

    uri: str
    auth: tuple[str, str] | None
    database: str | None


@pytest.fixture(scope="session")
def neo4j_target() -> Iterator[Neo4jTarget]:
    """The user's server when NEO4J_URI is set, else a test server started for this session."""
    uri = os.environ.get("NEO4J_URI")
    if uri:
        user = os.environ.get("NEO4J_USERNAME", "neo4j")
        password = os.environ.get("NEO4J_PASSWORD")
        auth = (user, password) if password else None
        yield Neo4jTarget(uri, auth, os.environ.get("NEO4J_DATABASE"))
        return
    with Neo4jTestServer() as server:
        assert server.uri is not None
        yield Neo4jTarget(server.uri, None, None)


@pytest.fixture(scope="session")
def neo4j_sync_driver(neo4j_target: Neo4jTarget) -> Iterator[neo4j.Driver]:
    """A synchronous driver for set-up and clean-up work outside the tests' event loops."""
    with neo4j.GraphDatabase.driver(neo4j_target.uri, auth=neo4j_target.auth) as driver:
        yield driver


def _clear_graph(driver: neo4j.Driver, database: str | None) -> None:
    with driver.session(database=database) as session:
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()
        # Constraints first: an index that backs a constraint cannot be dropped on its own.
        for name in session.run("SHOW CONSTRAINTS YIELD name RETURN name").value():
            session.run(f"DROP CONSTRAINT `{name}` IF EXISTS").consume()
        for name in session.run("SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name").value():
            session.run(f"DROP INDEX `{name}` IF EXISTS").consume()


@pytest.fixture
def clean_neo4j(neo4j_target: Neo4jTarget, neo4j_sync_driver: neo4j.Driver) -> Neo4jTarget:
    """The Neo4j target with an empty graph: no nodes, no indexes other than the lookup ones."""
    _clear_graph(neo4j_sync_driver, neo4j_target.database)
    return neo4j_target


@pytest.fixture
async def neo4j_driver(clean_neo4j: Neo4jTarget) -> AsyncIterator[neo4j.AsyncDriver]:
    """An async driver connected to a clean graph, closed after the test."""
    driver = neo4j.AsyncGraphDatabase.driver(clean_neo4j.uri, auth=clean_neo4j.auth)
    try:
        yield driver
    finally:
        await driver.close()
