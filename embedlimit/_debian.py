"""Load Debian package descriptions into Neo4j as a graph to embed.

The graph is `(:Package {name, section, priority, homepage, summary, description, summary_zh,
description_zh})`, `(:Package)-[:DEPENDS_ON]->(:Package)` and `(:Package)-[:IN_SECTION]->(:Section)`.
Loading is idempotent: nodes and relationships are merged on the package and section names, so
loading the same file twice leaves the graph unchanged, and loading a newer file updates the texts
without touching stored vectors.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import neo4j
import orjson

logger = logging.getLogger(__name__)

TEXT_FIELDS = ("section", "priority", "homepage", "summary", "description", "summary_zh", "description_zh")

_CONSTRAINTS = (
    "CREATE CONSTRAINT package_name IF NOT EXISTS FOR (p:Package) REQUIRE p.name IS UNIQUE",
    "CREATE CONSTRAINT section_name IF NOT EXISTS FOR (s:Section) REQUIRE s.name IS UNIQUE",
)

_MERGE_PACKAGES = """
UNWIND $rows AS row
MERGE (p:Package {name: row.name})
SET p += row.properties
WITH p, row WHERE row.section IS NOT NULL
MERGE (s:Section {name: row.section})
MERGE (p)-[:IN_SECTION]->(s)
"""

# Dependencies on packages absent from the file are dropped instead of creating stub nodes
# without text, which the backfill would then have to skip.
_MERGE_DEPENDENCIES = """
UNWIND $rows AS row
MATCH (p:Package {name: row.name})
UNWIND row.depends AS dependency
MATCH (d:Package {name: dependency})
MERGE (p)-[:DEPENDS_ON]->(d)
"""


@dataclass(frozen=True)
class LoadReport:
    """Counts from one load: packages read and merged, and the rows rejected as invalid."""

    packages: int
    invalid_rows: int


def read_packages(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield one package per line of a JSON Lines file, gzip-compressed or not.

    Lines that are not a JSON object with a non-empty string `name` are logged and skipped.
    """
    for package in _read_lines(path, warn=True):
        if package is not None:
            yield package


def _read_lines(path: str | Path, *, warn: bool) -> Iterator[dict[str, Any] | None]:
    """Yield each non-blank line's package, or None for a line that is invalid."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield _parse_line(line, number, warn)


def _parse_line(line: bytes, number: int, warn: bool) -> dict[str, Any] | None:
    try:
        package = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        if warn:
            logger.warning("line %d: invalid JSON (%s); skipped", number, error)
        return None
    if not isinstance(package, dict) or not isinstance(package.get("name"), str) or not package["name"]:
        if warn:
            logger.warning("line %d: not an object with a non-empty string 'name'; skipped", number)
        return None
    return package


def _to_row(package: dict[str, Any]) -> dict[str, Any]:
    properties = {field: package[field] for field in TEXT_FIELDS if isinstance(package.get(field), str)}
    depends = [name for name in package.get("depends") or [] if isinstance(name, str)]
    return {"name": package["name"], "section": properties.get("section"), "properties": properties,
            "depends": depends}


def _batches(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while batch := list(islice(rows, size)):
        yield batch


async def load_debian(
    driver: neo4j.AsyncDriver,
    path: str | Path,
    *,
    database: str | None = None,
    batch_size: int = 1000,
) -> LoadReport:
    """Merge the packages of a JSON Lines file into Neo4j; see the module docstring for the graph.

    Packages are written first and dependencies in a second pass, so an edge to a package that
    appears later in the file is not lost.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}; use 500 to 5000")
    async with driver.session(database=database) as session:
        for statement in _CONSTRAINTS:
            await session.run(statement)
        packages = await _run_batches(session, _MERGE_PACKAGES, read_packages(path), batch_size)
        quiet = (package for package in _read_lines(path, warn=False) if package is not None)
        await _run_batches(session, _MERGE_DEPENDENCIES, quiet, batch_size)
    invalid_rows = sum(1 for package in _read_lines(path, warn=False) if package is None)
    logger.info("loaded %d packages, skipped %d invalid lines", packages, invalid_rows)
    return LoadReport(packages=packages, invalid_rows=invalid_rows)


async def _run_batches(
    session: neo4j.AsyncSession, query: str, packages: Iterator[dict[str, Any]], batch_size: int
) -> int:
    count = 0
    rows = (_to_row(package) for package in packages)
    for batch in _batches(rows, batch_size):
        await session.execute_write(_write_batch, query, batch)
        count += len(batch)
    return count


async def _write_batch(tx: neo4j.AsyncManagedTransaction, query: str, rows: list[dict[str, Any]]) -> None:
    result = await tx.run(query, rows=rows)
    await result.consume()
