"""`replay()`: retry the items of a dead-letter file and keep only those that fail again."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import neo4j
import orjson

from embedlimit._embedder import Embedder
from embedlimit._errors import FatalError
from embedlimit._neo4j import GraphTarget, NodeText, TextSpec, VectorRow, VectorSink, quote_name, text_hash

logger = logging.getLogger(__name__)

_GROUP_FIELDS = ("label", "text_property", "text_template", "embedding_property", "store_hash")


@dataclass(frozen=True)
class ReplayReport:
    """The outcome of one replay: items now embedded, items that failed again, nodes gone, and
    nodes that had a vector already (a later backfill embedded them), which are dropped unchanged."""

    embedded: int
    failed: int
    missing: int
    stopped: FatalError | None = None
    already_embedded: int = 0


def read_dead_letters(path: Path) -> list[dict[str, Any]]:
    """Return the entries of a dead-letter file; invalid lines are logged and dropped."""
    entries = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            logger.warning("%s line %d: invalid JSON; skipped", path, number)
            continue
        if isinstance(entry, dict) and isinstance(entry.get("node_id"), str) and entry.get("label"):
            entries.append(entry)
        else:
            logger.warning("%s line %d: not a dead-letter entry; skipped", path, number)
    return entries


async def replay(driver: neo4j.AsyncDriver, embedder: Embedder, path: str | Path, *,
                 database: str | None = None, batch_size: int = 200) -> ReplayReport:
    """Embed the nodes listed in a dead-letter file again, and rewrite it with the failures left.

    Each entry's text is read from its node again, so a text fixed in the graph since the first
    run is what gets embedded. Entries whose node no longer exists are dropped and counted as
    missing, and entries whose node has a vector by now are dropped without embedding it again.
    A `FatalError` stops the replay, and every entry not yet embedded stays in the file.
    """
    path = Path(path)
    entries = read_dead_letters(path)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        groups[tuple(entry.get(name) for name in _GROUP_FIELDS)].append(entry)
    done: set[str] = set()
    failed: dict[str, dict[str, Any]] = {}
    missing = 0
    stopped: FatalError | None = None
    for group_entries in groups.values():
        try:
            missing += await _replay_group(driver, embedder, group_entries, database, batch_size, done, failed)
        except FatalError as error:
            logger.error("replay stopped: %s", error)
            stopped = error
            break
    left = [failed.get(entry["node_id"], entry) for entry in entries
            if entry["node_id"] not in done and not entry.get("_missing") and not entry.get("_embedded_since")]
    _rewrite(path, left)
    already = sum(1 for entry in entries if entry.get("_embedded_since"))
    return ReplayReport(embedded=len(done), failed=len(left), missing=missing, stopped=stopped,
                        already_embedded=already)


async def _replay_group(driver: neo4j.AsyncDriver, embedder: Embedder, entries: list[dict[str, Any]],
                        database: str | None, batch_size: int, done: set[str],
                        failed: dict[str, dict[str, Any]]) -> int:
    first = entries[0]
    target = GraphTarget(
        first["label"],
        TextSpec(property_name=first.get("text_property"), template=first.get("text_template")),
        first.get("embedding_property") or "embedding", database=database,
        model=embedder.settings.model if first.get("store_hash") else None,
        model_property=f"{first.get('embedding_property')}_model" if first.get("store_hash") else None,
        hash_property=f"{first.get('embedding_property')}_hash" if first.get("store_hash") else None,
    )
    nodes, embedded_since = await _fetch_nodes(driver, target, [entry["node_id"] for entry in entries])
    for entry in entries:
        entry["_missing"] = entry["node_id"] not in nodes and entry["node_id"] not in embedded_since
        entry["_embedded_since"] = entry["node_id"] in embedded_since
    by_id = {entry["node_id"]: entry for entry in entries}
    sink = VectorSink(driver, target)
    rows: list[VectorRow] = []
    # Non-string texts are passed on unchanged so that the embedder reports them per item.
    items = ((node, cast(str, node.text)) for node in nodes.values())
    async for result in embedder.embed_stream(items):
        node = result.key
        if result.vector is None or not isinstance(node.text, str):
            entry = by_id[node.element_id]
            failed[node.element_id] = {**entry, "reason": result.reason,
                                       "error": type(result.error).__name__ if result.error else None,
                                       "attempts": int(entry.get("attempts") or 1) + 1}
            continue
        rows.append(VectorRow(node.element_id, result.vector, text_hash(node.text)))
        if len(rows) >= batch_size:
            await _write(sink, rows, done)
            rows = []
    await _write(sink, rows, done)
    return sum(1 for entry in entries if entry["_missing"])


async def _write(sink: VectorSink, rows: list[VectorRow], done: set[str]) -> None:
    if rows:
        await sink.write(rows)
        done.update(row.element_id for row in rows)


async def _fetch_nodes(driver: neo4j.AsyncDriver, target: GraphTarget,
                       ids: list[str]) -> tuple[dict[str, NodeText], set[str]]:
    """Return the listed nodes still without a vector, and the ids of those that have one now."""
    projection = ", ".join(f".{quote_name(name, 'text property')}" for name in target.text.properties)
    embedding = f"n.{quote_name(target.embedding_property, 'embedding property')}"
    records, _, _ = await driver.execute_query(
        f"UNWIND $ids AS id MATCH (n:{quote_name(target.label, 'label')}) WHERE elementId(n) = id "
        f"RETURN elementId(n) AS id, n {{{projection}}} AS values, {embedding} IS NOT NULL AS has_vector",
        ids=ids, database_=target.database, routing_=neo4j.RoutingControl.READ,
    )
    nodes = {record["id"]: NodeText(record["id"], record["id"], target.text.render(record["values"]))
             for record in records if not record["has_vector"]}
    return nodes, {record["id"] for record in records if record["has_vector"]}


def _rewrite(path: Path, entries: Iterable[dict[str, Any]]) -> None:
    """Replace the file's content in one rename, so a crash leaves the old or the new list."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        for entry in entries:
            clean = {name: value for name, value in entry.items() if not name.startswith("_")}
            handle.write(orjson.dumps(clean) + b"\n")
    os.replace(temporary, path)
