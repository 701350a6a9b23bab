"""`backfill()`: give every node of a label that lacks a vector its embedding, resumably.

Data flow: `NodeSource` pages (node id, text) out of Neo4j, `Embedder.embed_stream` embeds them at
the pace the limiter sets, and `VectorSink` writes the vectors back in batches. Each stage waits on
the next through a bounded queue, so a slow Neo4j slows the embedding instead of filling memory.

A node counts as done only when its write has committed, and the source selects the nodes whose
vector is still missing. So a rerun resumes: a run killed at any moment redoes at most the
requests and write batches that were in flight, and no run writes a node twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, cast

import neo4j
import orjson

from embedlimit._embedder import Embedder
from embedlimit._errors import ConfigurationError, FatalError, InputError
from embedlimit._neo4j import (
    GraphTarget,
    NodeSource,
    NodeText,
    TextSpec,
    VectorIndex,
    VectorRow,
    VectorSink,
    ensure_vector_index,
    text_hash,
)
from embedlimit._results import EmbeddingResult

logger = logging.getLogger(__name__)

_DONE = object()


@dataclass
class BackfillProgress:
    """Counts so far, passed to the `on_progress` callback after each committed write batch.

    `total` is the number of nodes selected at the start, None when it was not counted.
    """

    embedded: int = 0
    failed: int = 0
    failed_inputs: int = 0
    written_batches: int = 0
    total: int | None = None
    started: float = field(default_factory=time.monotonic)
    clock_started: float = 0.0

    @property
    def elapsed(self) -> float:
        """Wall time since the start, in seconds."""
        return time.monotonic() - self.started


@dataclass(frozen=True)
class BackfillReport:
    """The outcome of one backfill run.

    `embedded` nodes got a vector that committed. `failed` items could not be embedded and went to
    the dead-letter file: `failed_inputs` of them because of their text, the others because their
    request still failed after its retries. `stopped` is the fatal error that ended the run early,
    None when the run finished. Token, request and cost figures come from the embedder's metrics; the cost is an
    estimate from its price table. `wall_seconds` is the real time of the embedding and writes,
    without building the index. `clock_seconds` is the same run on
    the embedder's clock, which differs only under a `ScaledClock`. `minimum_seconds`, on that
    clock, is the lower bound the rate limits allow for the tokens and requests sent, None when
    the limits are unknown.
    """

    embedded: int
    failed: int
    failed_inputs: int
    selected: int | None
    tokens: int
    requests: int
    rate_limited: int
    estimated_cost_usd: float | None
    wall_seconds: float
    clock_seconds: float
    minimum_seconds: float | None
    dead_letter_path: Path | None
    index: VectorIndex | None = None
    stopped: FatalError | None = None

    @property
    def complete(self) -> bool:
        """Whether the run went through every selected node without a fatal error."""
        return self.stopped is None


class DeadLetters:
    """Appends items that could not be embedded to a JSON Lines file, one object per line.

    Each line has `node_id` (the element id), `key` (the sort key value), `reason`, `error` (the
    exception class) and `attempts`, plus what `replay()` needs to fetch the text again: `label`,
    `text_property` or `text_template`, `embedding_property` and `store_hash`. Lines are flushed as
    they are written, so a crash loses none. The file is created with its first line. A node
    already listed for the same label, text and embedding property is counted but not written
    again, so a rerun after a stop does not list the same invalid node twice. A backfill of other
    properties that shares the file still records its own failures.
    """

    def __init__(self, path: Path | None, target: GraphTarget | None = None) -> None:
        self.path = path
        self.count = 0
        self._context = _target_context(target) if target is not None else {}
        self._listed = _listed_entries(path) if path is not None else set()
        self._handle: BinaryIO | None = None

    def add(self, node: NodeText, result: EmbeddingResult[NodeText], attempts: int = 1) -> None:
        self.count += 1
        identity = _entry_identity({"node_id": node.element_id, **self._context})
        if self.path is None or identity in self._listed:
            return
        self._listed.add(identity)
        error = result.error
        record = {
            "node_id": node.element_id,
            "key": node.key if isinstance(node.key, (str, int, float)) else str(node.key),
            "reason": result.reason,
            "error": type(error).__name__ if error is not None else None,
            "attempts": getattr(error, "attempt", None) or attempts,
            **self._context,
        }
        handle = self._open()
        handle.write(orjson.dumps(record) + b"\n")
        handle.flush()

    def _open(self) -> BinaryIO:
        if self._handle is None:
            assert self.path is not None
            self._handle = open(self.path, "ab")  # noqa: SIM115
            if _ends_mid_line(self._handle):
                # A crash cut the last line short: end it, so that the next entry starts on its own line.
                self._handle.write(b"\n")
        return self._handle

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def _ends_mid_line(handle: BinaryIO) -> bool:
    size = handle.seek(0, os.SEEK_END)
    if size == 0:
        return False
    with open(handle.name, "rb") as reader:
        reader.seek(size - 1)
        return reader.read(1) != b"\n"


_IDENTITY_FIELDS = ("node_id", "label", "text_property", "text_template", "embedding_property")


def _entry_identity(entry: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(entry.get(name) for name in _IDENTITY_FIELDS)


def _listed_entries(path: Path) -> set[tuple[Any, ...]]:
    """Return the identities of the entries a dead-letter file lists; a line cut short by a crash is skipped."""
    if not path.exists():
        return set()
    listed = set()
    for line in path.read_bytes().splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("node_id"), str):
            listed.add(_entry_identity(entry))
    return listed


def _target_context(target: GraphTarget) -> dict[str, Any]:
    return {
        "label": target.label,
        "text_property": target.text.property_name,
        "text_template": target.text.template,
        "embedding_property": target.embedding_property,
        "store_hash": target.hash_property is not None,
    }


@dataclass(frozen=True)
class _WriteJob:
    rows: list[VectorRow]


class _Writer:
    """Write batches on `concurrency` tasks, reporting each committed batch to the progress."""

    def __init__(self, sink: VectorSink, concurrency: int, progress: BackfillProgress,
                 on_progress: Callable[[BackfillProgress], None] | None) -> None:
        self._sink = sink
        self._queue: asyncio.Queue[_WriteJob | object] = asyncio.Queue(maxsize=concurrency)
        self._progress = progress
        self._on_progress = on_progress
        self._tasks = [asyncio.create_task(self._work()) for _ in range(concurrency)]

    async def put(self, rows: list[VectorRow]) -> None:
        await self._queue.put(_WriteJob(rows))
        self._raise_if_failed()

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            if job is _DONE:
                return
            assert isinstance(job, _WriteJob)
            written = await self._sink.write(job.rows)
            if written < len(job.rows):
                logger.warning("%d of %d nodes were deleted before their vectors were written",
                               len(job.rows) - written, len(job.rows))
            self._progress.embedded += written
            self._progress.written_batches += 1
            if self._on_progress is not None:
                self._on_progress(self._progress)

    def _raise_if_failed(self) -> None:
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def finish(self) -> None:
        """Wait until every queued batch is written; raise the first write error."""
        for _ in self._tasks:
            await self._queue.put(_DONE)
        await asyncio.gather(*self._tasks)

    async def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def backfill(
    driver: neo4j.AsyncDriver,
    embedder: Embedder,
    label: str = "Package",
    text_property: str | None = "description",
    embedding_property: str = "embedding",
    *,
    text_template: str | None = None,
    key_property: str | None = None,
    where: str | None = None,
    database: str | None = None,
    batch_size: int = 200,
    page_size: int = 1000,
    write_concurrency: int = 2,
    store_hash: bool = True,
    refresh_stale: bool = False,
    create_index: bool = False,
    similarity: str = "cosine",
    dead_letter_path: str | Path | None = None,
    count_first: bool = True,
    on_progress: Callable[[BackfillProgress], None] | None = None,
) -> BackfillReport:
    """Embed the text of every `label` node whose `embedding_property` is missing, and store it.

    The text is `text_property`, or `text_template` (a `str.format` template over properties,
    such as `"{summary}\\n\\n{description}"`) when given. `key_property` names a property with a
    range index or uniqueness constraint to page by. Without it, pages sort on element ids, which
    scans the label on every page. `where` is a Cypher condition on `n` that narrows the nodes.
    Write batches hold `batch_size` rows, and `write_concurrency` batches are written at once.

    With `store_hash`, the model name and a hash of the embedded text are stored beside the vector
    (in `<embedding_property>_model` and `<embedding_property>_hash`), and `refresh_stale`
    re-embeds the nodes whose text changed since. Items that cannot be embedded are appended to
    `dead_letter_path` (see `DeadLetters`). A `FatalError` from the embedder, such as exhausted
    quota, stops the run after the batches already embedded are committed; the report's
    `stopped` holds it. `create_index` creates a vector index when absent, and raises
    `ConfigurationError` when one exists with other dimensions.
    """
    text = TextSpec(property_name=None if text_template else text_property, template=text_template)
    target = GraphTarget(
        label, text, embedding_property, key_property=key_property, where=where, database=database,
        model=embedder.settings.model if store_hash else None,
        model_property=f"{embedding_property}_model" if store_hash else None,
        hash_property=f"{embedding_property}_hash" if store_hash or refresh_stale else None,
    )
    _check_sizes(batch_size, write_concurrency)
    source = NodeSource(driver, target, page_size=page_size, refresh_stale=refresh_stale)
    for warning in await source.find_mistakes():
        logger.warning("%s", warning)
    progress = BackfillProgress(total=await source.count() if count_first else None,
                                clock_started=embedder.clock.now())
    dead_letters = DeadLetters(Path(dead_letter_path) if dead_letter_path is not None else None, target)
    logger.info("backfill of :%s.%s started; %s nodes selected", label, embedding_property,
                "?" if progress.total is None else progress.total)
    if on_progress is not None:
        on_progress(progress)
    try:
        stopped = await _run(source, embedder, VectorSink(driver, target), dead_letters, progress,
                             batch_size, write_concurrency, on_progress)
    finally:
        dead_letters.close()
    report = _report(embedder, progress, dead_letters, stopped)
    if create_index and stopped is None:
        # The index is built after the timing above, which covers the embedding and writes only.
        report = replace(report, index=await _create_index(driver, target, embedder, similarity))
    return report


def _check_sizes(batch_size: int, write_concurrency: int) -> None:
    if batch_size < 1:
        raise ConfigurationError(f"batch_size must be at least 1, got {batch_size}; use 100 to 1000")
    if write_concurrency < 1:
        raise ConfigurationError(f"write_concurrency must be at least 1, got {write_concurrency}; use 1 to 4")


async def _items(source: NodeSource) -> AsyncIterator[tuple[NodeText, str]]:
    async for page in source.pages():
        for node in page:
            # Non-string texts are passed on unchanged so that the embedder reports them per item.
            yield node, cast(str, node.text)


async def _run(source: NodeSource, embedder: Embedder, sink: VectorSink, dead_letters: DeadLetters,
               progress: BackfillProgress, batch_size: int, write_concurrency: int,
               on_progress: Callable[[BackfillProgress], None] | None) -> FatalError | None:
    writer = _Writer(sink, write_concurrency, progress, on_progress)
    rows: list[VectorRow] = []
    stopped: FatalError | None = None
    try:
        try:
            async for result in embedder.embed_stream(_items(source)):
                row = _row(result, dead_letters, progress)
                if row is not None:
                    rows.append(row)
                if len(rows) >= batch_size:
                    await writer.put(rows)
                    rows = []
        except FatalError as error:
            logger.error("backfill stopped: %s; committing the %d vectors already received", error, len(rows))
            stopped = error
        if rows:
            await writer.put(rows)
        await writer.finish()
    except BaseException:
        await writer.cancel()
        raise
    return stopped


def _row(result: EmbeddingResult[NodeText], dead_letters: DeadLetters, progress: BackfillProgress) -> VectorRow | None:
    node = result.key
    if result.vector is None or not isinstance(node.text, str):
        dead_letters.add(node, result)
        progress.failed += 1
        if result.error is None or isinstance(result.error, InputError):
            progress.failed_inputs += 1
        return None
    return VectorRow(node.element_id, result.vector, text_hash(node.text))


async def _create_index(driver: neo4j.AsyncDriver, target: GraphTarget, embedder: Embedder,
                        similarity: str) -> VectorIndex:
    dimensions = embedder.settings.dimension or await _stored_dimensions(driver, target)
    if dimensions is None:
        raise ConfigurationError(
            f"cannot create a vector index: no :{target.label} node has a {target.embedding_property!r} "
            "vector yet and the model's dimensions are unknown; pass dimensions to the Embedder"
        )
    return await ensure_vector_index(driver, target, dimensions, similarity=similarity)


async def _stored_dimensions(driver: neo4j.AsyncDriver, target: GraphTarget) -> int | None:
    records, _, _ = await driver.execute_query(
        f"MATCH (n:`{target.label}`) WHERE n.`{target.embedding_property}` IS NOT NULL "
        f"RETURN size(n.`{target.embedding_property}`) AS dimensions LIMIT 1",
        database_=target.database, routing_=neo4j.RoutingControl.READ,
    )
    return int(records[0]["dimensions"]) if records else None


def minimum_seconds(tokens: int, requests: int, tokens_per_minute: float | None,
                    requests_per_minute: float | None) -> float | None:
    """Return the least time the rate limits allow for `tokens` in `requests`, in seconds.

    A full bucket may be spent at once: a minute's worth of tokens, and one second's worth of
    requests (the short window OpenAI enforces). The rest arrives at the per-minute rate, so the
    bound is the larger of (tokens - TPM) / TPM and (requests - RPM / 60) / RPM, in minutes.
    None when neither limit is known.
    """
    bounds = []
    if tokens_per_minute:
        bounds.append(60.0 * max(0.0, tokens - tokens_per_minute) / tokens_per_minute)
    if requests_per_minute:
        bounds.append(60.0 * max(0.0, requests - requests_per_minute / 60.0) / requests_per_minute)
    return max(bounds) if bounds else None


def _report(embedder: Embedder, progress: BackfillProgress, dead_letters: DeadLetters,
            stopped: FatalError | None) -> BackfillReport:
    metrics = embedder.metrics()
    tokens_per_minute, requests_per_minute = known_limits(embedder)
    return BackfillReport(
        embedded=progress.embedded,
        failed=progress.failed,
        failed_inputs=progress.failed_inputs,
        selected=progress.total,
        tokens=metrics.tokens,
        requests=metrics.requests,
        rate_limited=sum(metrics.rate_limited.values()),
        estimated_cost_usd=metrics.estimated_cost_usd,
        wall_seconds=progress.elapsed,
        clock_seconds=embedder.clock.now() - progress.clock_started,
        minimum_seconds=minimum_seconds(metrics.tokens, metrics.succeeded_requests, tokens_per_minute,
                                        requests_per_minute),
        dead_letter_path=dead_letters.path,
        stopped=stopped,
    )


def known_limits(embedder: Embedder) -> tuple[float | None, float | None]:
    """Return the (tokens, requests) per-minute limits given or learned, summed over the keys.

    NOTE: keys that share one organisation's limits are summed too, which overstates the limit
    and so understates the minimum time.
    """
    statistics = list(embedder.limiter_statistics().values())
    tokens = math.fsum(stat.limit_tokens for stat in statistics if stat.limit_tokens)
    requests = math.fsum(stat.limit_requests for stat in statistics if stat.limit_requests)
    return (tokens or None, requests or None)


__all__ = ["BackfillProgress", "BackfillReport", "DeadLetters", "backfill", "known_limits", "minimum_seconds"]
