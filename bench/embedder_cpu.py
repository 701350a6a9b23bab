"""Measure the client CPU seconds per 100,000 vectors (1536 dimensions): embedlimit against openai-python.

Both clients send the same batches of 2048 short texts (about 12 tokens each), 4 batches in
flight, to one simulator with no rate limits, no latency and no faults. The simulator runs in a
child process (`embedlimit simulate`), so its CPU is not counted. The client CPU is
`time.process_time()` of this process around each run: every thread of the client counts,
including token counting, JSON parsing and base64 decoding.

- `embedlimit`: `Embedder.embed(batch)` with its defaults (base64, float32 numpy vectors, tokens
  counted with cl100k_base, per-key rate limiter, response checks).
- `openai`: `AsyncOpenAI(...).embeddings.create(model=..., input=batch)` with its defaults
  (base64 decoded with numpy into lists of Python floats, pydantic models), `max_retries=0`.

Each run discards the vectors of a batch after checking their count, so memory stays flat.
The target is at most half of openai-python's CPU per vector.

Usage: `python bench/embedder_cpu.py [--quick] [--output PATH]`. `--quick` sends 10,240 texts
instead of 102,400. It prints one JSON line and a table, and writes the JSON to
`bench/results/embedder_cpu.json` (`embedder_cpu_quick.json` with `--quick`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import openai

from embedlimit._embedder import Embedder
from embedlimit._version import __version__

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MODEL = "text-embedding-3-small"
KEY = "sk-bench-embedder-cpu"
BATCH_SIZE = 2048
IN_FLIGHT = 4
SERVER_OPTIONS = [
    "--rpm", "0", "--tpm", "0", "--request-window", "0", "--no-input-counts",
    "--max-request-tokens", "10000000",
]
_START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Result:
    """One client's run: vectors received, CPU and wall seconds, and CPU seconds per 100,000 vectors."""

    client: str
    vectors: int
    batches: int
    cpu_seconds: float
    wall_seconds: float
    cpu_seconds_per_100k_vectors: float
    vectors_per_second: float


def make_batches(total: int) -> list[list[str]]:
    """Distinct texts of about 12 tokens, in batches of `BATCH_SIZE`."""
    template = "document {}: a short text about graphs, vectors and rate limits"
    texts = [template.format(number) for number in range(total)]
    return [texts[start : start + BATCH_SIZE] for start in range(0, total, BATCH_SIZE)]


@contextlib.asynccontextmanager
async def child_simulator() -> AsyncIterator[str]:
    """Run `embedlimit simulate` in a child process on 127.0.0.1 and yield its base URL."""
    environment = dict(os.environ, OPENAI_API_KEY=KEY)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "embedlimit._cli", "simulate", *SERVER_OPTIONS,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=environment,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), _START_TIMEOUT)
        if not line:
            raise RuntimeError(f"embedlimit simulate exited with code {await process.wait()} before listening")
        yield line.decode().strip()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15.0)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()


async def send_all(batches: list[list[str]], send: Callable[[list[str]], Awaitable[int]]) -> int:
    """Send every batch with `IN_FLIGHT` batches at a time; return the vectors received."""
    queue = list(reversed(batches))
    received = 0

    async def worker() -> None:
        nonlocal received
        while queue:
            batch = queue.pop()
            count = await send(batch)
            if count != len(batch):
                raise RuntimeError(f"received {count} vectors for a batch of {len(batch)} texts")
            received += count

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return received


async def run_embedlimit(base_url: str, batches: list[list[str]]) -> Result:
    async with Embedder(MODEL, api_key=KEY, base_url=base_url) as embedder:

        async def send(batch: list[str]) -> int:
            return len(await embedder.embed(batch))

        await send(["warm-up"])
        return await measure("embedlimit", batches, send)


async def run_openai(base_url: str, batches: list[list[str]]) -> Result:
    client = openai.AsyncOpenAI(api_key=KEY, base_url=base_url, max_retries=0)
    try:

        async def send(batch: list[str]) -> int:
            response = await client.embeddings.create(model=MODEL, input=batch)
            return len(response.data)

        await send(["warm-up"])
        return await measure("openai-python", batches, send)
    finally:
        await client.close()


async def measure(client: str, batches: list[list[str]], send: Callable[[list[str]], Awaitable[int]]) -> Result:
    gc.collect()
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    vectors = await send_all(batches, send)
    cpu = time.process_time() - cpu_start
    wall = time.perf_counter() - wall_start
    return Result(
        client=client,
        vectors=vectors,
        batches=len(batches),
        cpu_seconds=round(cpu, 3),
        wall_seconds=round(wall, 3),
        cpu_seconds_per_100k_vectors=round(cpu / vectors * 100_000, 3),
        vectors_per_second=round(vectors / wall, 1),
    )


async def run(quick: bool) -> list[Result]:
    batches = make_batches(10_240 if quick else 102_400)
    async with child_simulator() as base_url:
        return [await run_embedlimit(base_url, batches), await run_openai(base_url, batches)]


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "embedlimit": __version__,
        "openai": openai.__version__,
    }


def print_table(results: list[Result], ratio: float) -> None:
    print(f"{'client':<14} {'vectors':>8} {'CPU s':>7} {'wall s':>7} {'CPU s/100k':>11} {'vectors/s':>10}")
    for result in results:
        print(
            f"{result.client:<14} {result.vectors:>8} {result.cpu_seconds:>7.2f} {result.wall_seconds:>7.2f} "
            f"{result.cpu_seconds_per_100k_vectors:>11.2f} {result.vectors_per_second:>10.0f}"
        )
    print(f"embedlimit CPU per vector = {ratio:.2f} x openai-python (target: at most 0.50)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="send 10,240 texts instead of 102,400")
    parser.add_argument("--output", type=Path, help="where to write the JSON (default: bench/results/...)")
    args = parser.parse_args(argv)

    results = asyncio.run(run(args.quick))
    embedlimit_result, openai_result = results
    ratio = embedlimit_result.cpu_seconds_per_100k_vectors / openai_result.cpu_seconds_per_100k_vectors
    report = {
        "benchmark": "embedder_cpu",
        "quick": args.quick,
        "dimensions": 1536,
        "batch_size": BATCH_SIZE,
        "in_flight": IN_FLIGHT,
        "server": "child process (embedlimit simulate), no limits, no latency",
        "machine": machine(),
        "results": [asdict(result) for result in results],
        "cpu_ratio": round(ratio, 3),
    }
    print(json.dumps(report))
    print_table(results, ratio)

    output = args.output or RESULTS_DIR / ("embedder_cpu_quick.json" if args.quick else "embedder_cpu.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
