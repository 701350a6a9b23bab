"""Neo4j source and sink for the backfill: keyset reads, batched vector writes, the vector index.

Reads page through the nodes that lack a vector by keyset pagination on a sort key. Each page is
one short read transaction, `WHERE key > $after ORDER BY key LIMIT $page_size`, so memory stays
constant and no node already handed out is fetched again in the same run. Writes go through
`db.create.setNodeVectorProperty`, which stores a float32 array.
"""

from __future__ import annotations

import hashlib
import logging
import re
import string
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import neo4j

from embedlimit._clock import Clock, LoopClock
from embedlimit._errors import ConfigurationError
from embedlimit._vectors import Vector

logger = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"^[^`\x00]+$")
_MEMORY_ERROR_MARKERS = ("MemoryPoolOutOfMemoryError", "memory.transaction", "TransactionOutOfMemoryError")


def quote_name(name: str, kind: str) -> str:
    """Return `name` as a backtick-quoted Cypher identifier, or raise ConfigurationError."""
    if not name or not _IDENTIFIER.match(name):
        raise ConfigurationError(
            f"invalid {kind} {name!r}: it must be non-empty and contain no backtick; "
            "use the label or property name as it appears in Neo4j"
        )
    return f"`{name}`"


def text_hash(text: str) -> str:
    """Return the hash stored beside a vector to detect that the embedded text changed."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class TextSpec:
    """The source of a node's text: one property, or a `str.format` template over several."""

    property_name: str | None = None
    template: str | None = None

    def __post_init__(self) -> None:
        if (self.property_name is None) == (self.template is None):
            raise ConfigurationError("give exactly one of text_property and text_template")
        for name in self.properties:
            quote_name(name, "text property")

    @property
    def properties(self) -> tuple[str, ...]:
        """The node properties the text reads."""
        if self.template is None:
            return (self.property_name,) if self.property_name else ()
        fields = [field for _, field, _, _ in string.Formatter().parse(self.template) if field]
        if not fields:
            raise ConfigurationError(
                f"text template {self.template!r} names no property; write one like '{{summary}}\\n\\n{{description}}'"
            )
        return tuple(dict.fromkeys(fields))

    def render(self, values: Mapping[str, Any]) -> object:
        """Return the text for one node; a missing property reads as an empty string in a template.

        With a single property the raw value is returned, so a non-string value reaches the
        embedder's input checks and is reported there instead of being silently converted.
        """
        if self.template is None:
            return values.get(self.property_name or "")
        present = {name: "" if values.get(name) is None else values[name] for name in self.properties}
        return self.template.format_map(present)


@dataclass(frozen=True)
class NodeText:
    """One node to embed: its element id, its sort key, its text and the stored text hash."""

    element_id: str
    key: Any
    text: object
    stored_hash: str | None = None


@dataclass(frozen=True)
class VectorRow:
    """One vector to write to a node, with the hash of the text it was made from."""

    element_id: str
    vector: Vector | Sequence[float]
    text_hash: str


@dataclass(frozen=True)
class GraphTarget:
    """The nodes a backfill reads and writes: label, properties, filter and database."""

    label: str
    text: TextSpec
    embedding_property: str = "embedding"
    key_property: str | None = None
    where: str | None = None
    database: str | None = None
    model: str | None = None
    model_property: str | None = None
    hash_property: str | None = None

    def __post_init__(self) -> None:
        quote_name(self.label, "label")
        for name, kind in ((self.embedding_property, "embedding property"),
                           (self.key_property, "key property"),
                           (self.model_property, "model property"),
                           (self.hash_property, "hash property")):
            if name is not None:
                quote_name(name, kind)

    @property
    def key_expression(self) -> str:
        """The keyset sort key: the key property when given, else the node's element id.

        NOTE: Neo4j has no index on element ids, so without a key property every page scans
        the label to sort it. That is fine up to a few hundred thousand nodes; beyond, pass a key
        property that has a range index or a uniqueness constraint.
        """
        if self.key_property is None:
            return "elementId(n)"
        return f"n.{quote_name(self.key_property, 'key property')}"

    def missing_condition(self, refresh_stale: bool) -> str:
        """Return the Cypher condition on `n` that selects the nodes to embed."""
        embedding = f"n.{quote_name(self.embedding_property, 'embedding property')}"
        # A refresh fetches the nodes that have a vector too, and the caller compares text hashes.
        condition = "true" if refresh_stale else f"{embedding} IS NULL"
        if self.where:
            condition = f"{condition} AND ({self.where})"
        return condition


class NodeSource:
    """Pages through the nodes of a `GraphTarget` that need a vector."""

    def __init__(self, driver: neo4j.AsyncDriver, target: GraphTarget, *, page_size: int = 1000,
                 refresh_stale: bool = False) -> None:
        if page_size < 1:
            raise ConfigurationError(f"page_size must be at least 1, got {page_size}; use 500 to 5000")
        if refresh_stale and target.hash_property is None:
            raise ConfigurationError("refresh_stale needs a hash property; set hash_property (or --store-hash)")
        self._driver = driver
        self._target = target
        self._page_size = page_size
        self._refresh_stale = refresh_stale

    def _page_query(self, first: bool) -> str:
        target = self._target
        key = target.key_expression
        after = "" if first else f" AND {key} > $after"
        projection = ", ".join(f".{quote_name(name, 'text property')}" for name in target.text.properties)
        stored_hash = f"n.{quote_name(target.hash_property, 'hash property')}" if target.hash_property else "null"
        return (
            f"MATCH (n:{quote_name(target.label, 'label')}) "
            f"WHERE {key} IS NOT NULL AND {target.missing_condition(self._refresh_stale)}{after} "
            f"RETURN {key} AS key, elementId(n) AS id, n {{{projection}}} AS values, {stored_hash} AS stored_hash "
            f"ORDER BY key LIMIT $limit"
        )

    async def pages(self) -> AsyncIterator[list[NodeText]]:
        """Yield pages of nodes in key order until none is left; each page is one read transaction."""
        after: Any = None
        first = True
        while True:
            records = await self._read_page(self._page_query(first), after)
            if not records:
                return
            page = [self._node_text(record) for record in records]
            after, first = page[-1].key, False
            selected = [node for node in page if self._needs_vector(node)]
            if selected:
                yield selected

    async def _read_page(self, query: str, after: Any) -> list[neo4j.Record]:
        async with self._driver.session(database=self._target.database,
                                        default_access_mode=neo4j.READ_ACCESS) as session:
            return await session.execute_read(_fetch_all, query, after=after, limit=self._page_size)

    def _node_text(self, record: neo4j.Record) -> NodeText:
        text = self._target.text.render(record["values"])
        return NodeText(record["id"], record["key"], text, record["stored_hash"])

    def _needs_vector(self, node: NodeText) -> bool:
        if not self._refresh_stale:
            return True
        return not isinstance(node.text, str) or node.stored_hash != text_hash(node.text)

    async def count(self) -> int:
        """Count the nodes a full pass would visit (for refresh runs, every node with a key)."""
        target = self._target
        query = (
            f"MATCH (n:{quote_name(target.label, 'label')}) "
            f"WHERE {target.key_expression} IS NOT NULL AND {target.missing_condition(self._refresh_stale)} "
            "RETURN count(n) AS count"
        )
        async with self._driver.session(database=target.database,
                                        default_access_mode=neo4j.READ_ACCESS) as session:
            records = await session.execute_read(_fetch_all, query)
        return int(records[0]["count"])


    async def find_mistakes(self) -> list[str]:
        """Return warnings about names that match nothing: a label without nodes, or a text or key
        property that no node of the label has, which usually means a typo."""
        target = self._target
        label = quote_name(target.label, "label")
        if not await self._exists(f"MATCH (n:{label}) RETURN 1 AS found LIMIT 1"):
            return [f"no node has the label {target.label!r}; check --label (labels are case-sensitive)"]
        names = list(target.text.properties)
        if target.key_property is not None:
            names.append(target.key_property)
        warnings = []
        for name in names:
            query = f"MATCH (n:{label}) WHERE n.{quote_name(name, 'property')} IS NOT NULL RETURN 1 AS found LIMIT 1"
            if not await self._exists(query):
                warnings.append(f"no :{target.label} node has the property {name!r}; check its spelling")
        return warnings

    async def _exists(self, query: str) -> bool:
        async with self._driver.session(database=self._target.database,
                                        default_access_mode=neo4j.READ_ACCESS) as session:
            return bool(await session.execute_read(_fetch_all, query))


async def _fetch_all(tx: neo4j.AsyncManagedTransaction, /, query: str, **parameters: Any) -> list[neo4j.Record]:
    result = await tx.run(query, parameters)
    return [record async for record in result]


class BatchTooLargeError(Exception):
    """A write batch exceeded the server's transaction memory limit."""


class VectorSink:
    """Writes vectors to nodes in batches, one write transaction each.

    The embeddings API is never called inside a transaction, so retrying a write never spends
    quota again. Transactions are explicit with their own retry loop instead of
    `session.execute_write`: the driver treats the server's transaction memory-limit error as
    transient and would retry a batch that is simply too large until its retry time (30 s by
    default) runs out, sometimes failing only at commit. Here such a batch is split in halves,
    down to single rows, and other retryable errors (deadlocks, leader changes, lost
    connections) are retried with exponential backoff up to `max_attempts` times.
    """

    def __init__(self, driver: neo4j.AsyncDriver, target: GraphTarget, *, max_attempts: int = 8,
                 base_delay: float = 0.2, clock: Clock | None = None) -> None:
        if max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be at least 1, got {max_attempts}")
        self._driver = driver
        self._target = target
        self._query = self._write_query()
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._clock = clock or LoopClock()

    def _write_query(self) -> str:
        target = self._target
        extra = []
        if target.model_property is not None:
            extra.append(f"n.{quote_name(target.model_property, 'model property')} = $model")
        if target.hash_property is not None:
            extra.append(f"n.{quote_name(target.hash_property, 'hash property')} = row.hash")
        set_clause = f" SET {', '.join(extra)}" if extra else ""
        return (
            "UNWIND $rows AS row MATCH (n) WHERE elementId(n) = row.id "
            "CALL db.create.setNodeVectorProperty(n, $property, row.vector)"
            f"{set_clause} RETURN count(n) AS written"
        )

    async def write(self, rows: Sequence[VectorRow]) -> int:
        """Write one batch and return how many nodes were updated (a deleted node counts as 0)."""
        if not rows:
            return 0
        try:
            return await self._write_with_retries(rows)
        except BatchTooLargeError:
            if len(rows) == 1:
                raise
            middle = len(rows) // 2
            logger.warning("write batch of %d rows exceeded the transaction memory limit; splitting", len(rows))
            return await self.write(rows[:middle]) + await self.write(rows[middle:])

    async def _write_with_retries(self, rows: Sequence[VectorRow]) -> int:
        parameters = {
            "rows": _QuietRows(
                {"id": row.element_id, "vector": _as_list(row.vector), "hash": row.text_hash} for row in rows
            ),
            "property": self._target.embedding_property,
            "model": self._target.model,
        }
        for attempt in range(1, self._max_attempts + 1):
            try:
                return await self._write_once(parameters)
            except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError) as error:
                if isinstance(error, neo4j.exceptions.Neo4jError) and _is_memory_error(error):
                    raise BatchTooLargeError(str(error.code)) from error
                if not error.is_retryable() or attempt == self._max_attempts:
                    raise
                delay = self._base_delay * 2 ** (attempt - 1)
                reason = getattr(error, "code", None) or type(error).__name__
                logger.warning("write of %d rows failed (%s), attempt %d; retrying in %.2f s",
                               len(rows), reason, attempt, delay)
            await self._clock.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _write_once(self, parameters: dict[str, Any]) -> int:
        async with self._driver.session(database=self._target.database) as session:
            transaction = await session.begin_transaction()
            async with transaction:
                result = await transaction.run(self._query, parameters)
                record = await result.single(strict=True)
                await transaction.commit()
        return int(record["written"])


class _QuietRows(list[dict[str, Any]]):
    """Query rows whose `repr()` gives only their count.

    The neo4j driver (6.4) builds its DEBUG line for every query with `repr()` of all parameters,
    even when DEBUG is off. For 500 vectors of 1,536 floats that took about 0.66 s of the 0.8 s
    a batch took to write. With this repr the same writes ran about five times faster, and vectors
    stay out of the driver's DEBUG log.
    """

    def __repr__(self) -> str:
        return f"<{len(self)} rows>"


def _is_memory_error(error: neo4j.exceptions.Neo4jError) -> bool:
    text = f"{error.code or ''} {error.message or ''}"
    return any(marker in text for marker in _MEMORY_ERROR_MARKERS)


def _as_list(vector: Vector | Sequence[float]) -> list[float]:
    to_list = getattr(vector, "tolist", None)
    return to_list() if to_list is not None else list(vector)


@dataclass(frozen=True)
class VectorIndex:
    """A vector index as `SHOW VECTOR INDEXES` reports it."""

    name: str
    dimensions: int | None
    similarity: str | None
    state: str


async def find_vector_index(driver: neo4j.AsyncDriver, target: GraphTarget) -> VectorIndex | None:
    """Return the vector index on the target's label and embedding property, if there is one."""
    records, _, _ = await driver.execute_query(
        "SHOW VECTOR INDEXES YIELD name, labelsOrTypes, properties, options, state "
        "WHERE labelsOrTypes = [$label] AND properties = [$property] RETURN name, options, state",
        label=target.label, property=target.embedding_property, database_=target.database,
        routing_=neo4j.RoutingControl.READ,
    )
    if not records:
        return None
    config = (records[0]["options"] or {}).get("indexConfig", {})
    dimensions = config.get("vector.dimensions")
    return VectorIndex(records[0]["name"], int(dimensions) if dimensions is not None else None,
                       config.get("vector.similarity_function"), records[0]["state"])


async def ensure_vector_index(driver: neo4j.AsyncDriver, target: GraphTarget, dimensions: int, *,
                              similarity: str = "cosine", name: str | None = None,
                              wait_seconds: float = 300.0) -> VectorIndex:
    """Create the vector index when absent and wait until it is online.

    Raises ConfigurationError when an index exists on the same label and property with other
    dimensions, since every query against it would then fail.
    """
    existing = await find_vector_index(driver, target)
    if existing is not None and existing.dimensions not in (None, dimensions):
        raise ConfigurationError(
            f"vector index {existing.name!r} on :{target.label}({target.embedding_property}) has "
            f"{existing.dimensions} dimensions but the model returns {dimensions}; drop the index, "
            f"or choose a model or --dimensions value that returns {existing.dimensions}"
        )
    if existing is None:
        index_name = name or f"{target.label}_{target.embedding_property}_vector".lower()
        await driver.execute_query(
            f"CREATE VECTOR INDEX {quote_name(index_name, 'index name')} IF NOT EXISTS "
            f"FOR (n:{quote_name(target.label, 'label')}) ON n.{quote_name(target.embedding_property, 'property')} "
            "OPTIONS {indexConfig: {`vector.dimensions`: $dimensions, `vector.similarity_function`: $similarity}}",
            dimensions=dimensions, similarity=similarity, database_=target.database,
        )
        logger.info("created vector index %s (%d dimensions, %s)", index_name, dimensions, similarity)
    await driver.execute_query("CALL db.awaitIndexes($seconds)", seconds=int(wait_seconds), database_=target.database)
    index = await find_vector_index(driver, target)
    assert index is not None
    return index
