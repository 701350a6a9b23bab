"""Measure the backfill's Neo4j side: the write rate and the memory of a whole run.

1. `write_rate`: nodes per second written with 1,536-dimension vectors from this process through
   the driver (`VectorSink`: `--batch-size` rows per batch, `--write-concurrency` batches in flight), next
   to the same server writing the same vectors from inside Cypher (the vector is built in Cypher
   with `[i IN range(0, 1535) | ...]`, so nothing crosses the network). The second figure is the
   ceiling the client path is compared with.
2. `backfill_rss`: the peak resident memory of the `embedlimit backfill` process over a whole
   run against an unlimited simulator in another process, for 10,000 and 60,000 nodes
   (1,000 and 5,000 with `--quick`). Flat memory means the two figures are close.

Neo4j is the server at NEO4J_URI, else a test server started here (Java 17 and Maven).

Usage: `python bench/backfill_write.py [--quick]`. Prints a table and writes JSON to
`bench/results/backfill_write.json` (`..._quick.json` with `--quick`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import neo4j
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embedlimit._neo4j import GraphTarget, NodeSource, TextSpec, VectorRow, VectorSink  # noqa: E402
from embedlimit.testing import Simulator, expected_vector  # noqa: E402
from tests.neo4j.server import Neo4jTestServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DIMENSIONS = 1536
KEY = "sk-bench-backfill"


def auth() -> tuple[str, str] | None:
    password = os.environ.get("NEO4J_PASSWORD")
    return (os.environ.get("NEO4J_USERNAME", "neo4j"), password) if password else None


async def auto_commit(driver: neo4j.AsyncDriver, query: str, **parameters: Any) -> None:
    """Run a query in an auto-commit transaction, which `CALL { ... } IN TRANSACTIONS` requires."""
    async with driver.session() as session:
        result = await session.run(query, parameters)
        await result.consume()


async def create_docs(driver: neo4j.AsyncDriver, count: int) -> None:
    await auto_commit(driver, "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS")
    await auto_commit(driver, "CREATE CONSTRAINT doc_uid IF NOT EXISTS FOR (d:Doc) REQUIRE d.uid IS UNIQUE")
    await auto_commit(driver,
        "UNWIND range(0, $count - 1) AS i CALL (i) { CREATE (:Doc {uid: i, body: 'document ' + i + "
        "' on topic ' + (i % 101) + ' with words ' + (i % 7) + ' and ' + (i % 13)}) } IN TRANSACTIONS OF 5000 ROWS",
        count=count,
    )


async def client_write_rate(driver: neo4j.AsyncDriver, count: int, concurrency: int, batch_size: int) -> float:
    await create_docs(driver, count)
    target = GraphTarget("Doc", TextSpec(property_name="body"), key_property="uid")
    nodes = [node async for page in NodeSource(driver, target, page_size=5000).pages() for node in page]
    vector = expected_vector("a fixed vector", dimensions=DIMENSIONS)
    batches = [[VectorRow(node.element_id, vector, "h") for node in nodes[start:start + batch_size]]
               for start in range(0, len(nodes), batch_size)]
    sink = VectorSink(driver, target)
    queue: asyncio.Queue[list[VectorRow]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def work() -> None:
        while not queue.empty():
            await sink.write(queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(work() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def cypher_write_rate(driver: neo4j.AsyncDriver, count: int) -> float:
    await create_docs(driver, count)
    started = time.perf_counter()
    await auto_commit(
        driver,
        "MATCH (d:Doc) CALL (d) { CALL db.create.setNodeVectorProperty(d, 'embedding', "
        "[i IN range(0, $dimensions - 1) | toFloat(i % 97) / 97.0]) } IN TRANSACTIONS OF 500 ROWS",
        dimensions=DIMENSIONS,
    )
    return count / (time.perf_counter() - started)


async def backfill_rss(uri: str, count: int) -> dict[str, Any]:
    async with neo4j.AsyncGraphDatabase.driver(uri, auth=auth()) as driver:
        await create_docs(driver, count)
    async with Simulator(rpm=None, tpm=None, request_window=None, keys=[KEY], track_inputs=False) as sim:
        environment = {**os.environ, "NEO4J_URI": uri, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": sim.base_url}
        command = [sys.executable, "-m", "embedlimit", "backfill", "--label", "Doc", "--text-property", "body",
                   "--key-property", "uid", "--json", "--log-level", "WARNING", "--dead-letter", os.devnull]
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(*command, env=environment, stdout=asyncio.subprocess.PIPE)
        peak = await _watch_rss(process)
        stdout, _ = await process.communicate()
        elapsed = time.perf_counter() - started
    summary = json.loads(stdout)
    return {"nodes": count, "embedded": summary["embedded"], "seconds": round(elapsed, 2),
            "nodes_per_second": round(count / elapsed, 1), "peak_rss_mb": round(peak / 2**20, 1)}


async def _watch_rss(process: asyncio.subprocess.Process) -> int:
    watched = psutil.Process(process.pid)
    peak = 0
    while process.returncode is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(process.wait(), 0.05)
    return peak


async def measure(uri: str, quick: bool, concurrency: int, batch_size: int) -> dict[str, Any]:
    write_nodes = 2_000 if quick else 20_000
    async with neo4j.AsyncGraphDatabase.driver(uri, auth=auth()) as driver:
        client = await client_write_rate(driver, write_nodes, concurrency, batch_size)
        ceiling = await cypher_write_rate(driver, write_nodes)
    sizes = (1_000, 5_000) if quick else (10_000, 60_000)
    runs = [await backfill_rss(uri, size) for size in sizes]
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "write_rate": {"nodes": write_nodes, "write_concurrency": concurrency, "batch_size": batch_size,
                       "client_nodes_per_second": round(client, 1), "cypher_nodes_per_second": round(ceiling, 1),
                       "fraction_of_ceiling": round(client / ceiling, 3)},
        "backfill_rss": runs,
        "bench_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def print_table(results: dict[str, Any]) -> None:
    rate = results["write_rate"]
    print(f"write path ({rate['nodes']:,} nodes, {DIMENSIONS} dimensions)")
    print(f"  client through driver : {rate['client_nodes_per_second']:>10,.0f} nodes/s")
    print(f"  in-Cypher ceiling     : {rate['cypher_nodes_per_second']:>10,.0f} nodes/s")
    print(f"  fraction of ceiling   : {rate['fraction_of_ceiling']:>10.1%}")
    print("backfill process, unlimited simulator")
    for run in results["backfill_rss"]:
        print(f"  {run['nodes']:>7,} nodes: {run['seconds']:>7.1f} s, {run['nodes_per_second']:>8,.0f} nodes/s, "
              f"peak RSS {run['peak_rss_mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for the test suite")
    parser.add_argument("--write-concurrency", type=int, default=2, help="batches in flight (default: 2)")
    parser.add_argument("--batch-size", type=int, default=200, help="rows per write transaction (default: 200)")
    arguments = parser.parse_args()
    server = None
    uri = os.environ.get("NEO4J_URI")
    if not uri:
        server = Neo4jTestServer(java_options=["-Xmx2g"])
        uri = server.start()
    try:
        results = asyncio.run(measure(uri, arguments.quick, arguments.write_concurrency, arguments.batch_size))
    finally:
        if server is not None:
            server.stop()
    print_table(results)
    RESULTS.mkdir(exist_ok=True)
    name = "backfill_write_quick.json" if arguments.quick else "backfill_write.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
