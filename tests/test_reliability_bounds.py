"""Bounds: a hanging API cannot stall a run, queues are bounded, and memory stays flat.

The memory check runs the CLI with full-length vectors, one write transaction at a time and small
write batches, so Neo4j writes are slower than the simulated API, and samples its peak RSS.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import neo4j
import psutil  # type: ignore[import-untyped]
import pytest

from embedlimit._backfill import BackfillProgress, _Writer
from embedlimit._embedder import Embedder
from embedlimit._errors import RequestTimeoutError
from embedlimit._neo4j import VectorRow, VectorSink
from embedlimit._retry import RetryPolicy
from embedlimit._streaming import CHUNK_SIZE
from embedlimit.testing import Simulator
from tests.conftest import Neo4jTarget
from tests.reliability_support import (
    KEY,
    MODEL,
    backfill_arguments,
    cli_environment,
    create_docs,
    finish_cli,
    start_cli,
)

MEBIBYTE = 1024 * 1024


async def test_hanging_api_times_out() -> None:
    # Every response is held back for 60 s; a 0.2 s read timeout and two attempts end each item.
    async with Simulator(keys=[KEY], fault_rates={"hang": 1.0}, hang_delay=60.0) as sim:
        retry = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.05, rng=random.Random(1))
        async with Embedder(MODEL, api_key=KEY, base_url=sim.base_url, read_timeout=0.2, retry=retry,
                            max_inputs_per_request=10) as embedder:
            started = time.monotonic()
            items = [(index, f"text {index}") for index in range(50)]
            results = [result async for result in embedder.embed_stream(items)]
            elapsed = time.monotonic() - started

    assert len(results) == 50
    assert all(isinstance(result.error, RequestTimeoutError) for result in results)
    assert elapsed < 10.0


class _BlockedSink:
    """A sink whose writes wait until `release` is set, as a stalled Neo4j would."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0

    async def write(self, rows: Sequence[VectorRow]) -> int:
        self.started += 1
        await self.release.wait()
        return len(rows)


async def test_writer_queue_is_bounded() -> None:
    sink = _BlockedSink()
    writer = _Writer(cast(VectorSink, sink), 2, BackfillProgress(), None)
    row = [VectorRow("4:db:1", [0.0], "hash")]
    for _ in range(4):
        await asyncio.wait_for(writer.put(row), 1.0)

    blocked = asyncio.create_task(writer.put(row))
    await asyncio.sleep(0.2)
    assert not blocked.done()
    assert sink.started == 2
    sink.release.set()
    await asyncio.wait_for(blocked, 1.0)
    await asyncio.wait_for(writer.finish(), 1.0)
    assert sink.started == 5


async def test_stream_reads_bounded_ahead() -> None:
    read = 0

    def items() -> Iterator[tuple[int, str]]:
        nonlocal read
        for index in itertools.count():
            read += 1
            yield index, f"text {index}"

    async with Simulator(keys=[KEY]) as sim, Embedder(
        MODEL, api_key=KEY, base_url=sim.base_url, max_inputs_per_request=10, max_pending_inputs=100
    ) as embedder:
        stream = embedder.embed_stream(items())
        await anext(stream)
        # The consumer stops here; the feeder may fill the input budget, then must wait.
        await asyncio.sleep(1.0)
        read_while_stalled = read
        await stream.aclose()  # type: ignore[attr-defined]

    assert read_while_stalled <= 100 + CHUNK_SIZE + 10


async def _peak_rss(target: Neo4jTarget, driver: neo4j.AsyncDriver, tmp_path: Path, nodes: int) -> int:
    await driver.execute_query("MATCH (d:Doc) DETACH DELETE d")
    await create_docs(driver, nodes)
    arguments = backfill_arguments(tmp_path / f"dead-{nodes}.jsonl", "--write-concurrency", "1",
                                   "--batch-size", "50", clock_scale=600)
    async with Simulator(keys=[KEY], time_scale=600.0) as sim:
        process = await start_cli(cli_environment(target, sim, tmp_path), *arguments)
        monitored = psutil.Process(process.pid)
        peak = 0
        while process.returncode is None:
            try:
                peak = max(peak, monitored.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            await asyncio.sleep(0.05)
        run = await finish_cli(process, timeout=300)
    assert run.code == 0, run.stderr[-3000:]
    assert run.summary()["embedded"] == nodes
    return peak


@pytest.mark.neo4j
@pytest.mark.timeout(120)
async def test_memory_bounded_slow_writes(
    clean_neo4j: Neo4jTarget, neo4j_driver: neo4j.AsyncDriver, tmp_path: Path
) -> None:
    peak = await _peak_rss(clean_neo4j, neo4j_driver, tmp_path, 2000)

    print(f"peak RSS with 2,000 nodes: {peak / MEBIBYTE:.0f} MiB")
    assert peak < 400 * MEBIBYTE


@pytest.mark.slow
@pytest.mark.neo4j
@pytest.mark.timeout(900)
async def test_memory_flat_two_sizes(
    clean_neo4j: Neo4jTarget, neo4j_driver: neo4j.AsyncDriver, tmp_path: Path
) -> None:
    small = await _peak_rss(clean_neo4j, neo4j_driver, tmp_path, 10_000)
    large = await _peak_rss(clean_neo4j, neo4j_driver, tmp_path, 30_000)

    print(f"peak RSS: {small / MEBIBYTE:.0f} MiB with 10,000 nodes, {large / MEBIBYTE:.0f} MiB with 30,000")
    # Both sizes exceed the 8,192 pending inputs a stream holds, so three times the nodes should add
    # only noise. The 64 MiB allowed is about 8,192 vectors of 1,536 float32 values, plus slack.
    assert large - small < 64 * MEBIBYTE
