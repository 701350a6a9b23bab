"""Measure the OpenAI embeddings simulator's own ceiling: requests/s and vectors/s, 1536 dimensions.

The simulator runs with no rate limits, no latency, no faults and no per-text counting, so the
figures are what the server, the loopback network and a plain aiohttp client can do together on
this machine. They bound every other benchmark that runs against the simulator.

Scenarios:

1. `small_requests`: one short input per request, base64, 32 requests in flight, for a fixed
   time. Reports requests/s.
2. `vectors_base64` and `vectors_float`: requests of 2048 inputs, 4 in flight, until 100,000
   vectors (10,000 with `--quick`) have arrived. Reports vectors/s and MB/s received.

By default the simulator runs in a child process (`embedlimit simulate`) and the client in this
one, so each has its own event loop and core. `--same-loop` serves the simulator in the client's
event loop instead. The client reads each JSON body with orjson and checks the vector count,
but does not decode base64 vectors. With float vectors the client's JSON parsing sets the pace.
On a 2-core AMD EPYC VM, orjson took about 205 ms to parse one 39 MB body of 2048 float
vectors, and the server took about 147 ms to build it.

Usage: `python bench/simulator_ceiling.py [--quick] [--same-loop] [--output PATH]`. It prints one
JSON line and a table, and writes the JSON to `bench/results/simulator_ceiling.json`
(`..._quick.json` with `--quick`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from embedlimit.testing import Simulator

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MODEL = "text-embedding-3-small"
KEY = "sk-bench-ceiling"
SERVER_OPTIONS = [
    "--rpm", "0", "--tpm", "0", "--request-window", "0", "--no-input-counts",
    "--max-request-tokens", "10000000",
]
_START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Scenario:
    """One load shape: inputs per request, requests in flight, and when to stop."""

    name: str
    inputs_per_request: int
    concurrency: int
    encoding_format: str
    duration: float | None = None
    total_vectors: int | None = None


@dataclass(frozen=True)
class Result:
    """Figures measured by one scenario; latencies are real milliseconds per request."""

    scenario: str
    inputs_per_request: int
    concurrency: int
    encoding_format: str
    requests: int
    vectors: int
    errors: int
    seconds: float
    requests_per_second: float
    vectors_per_second: float
    megabytes_per_second: float
    latency_p50_ms: float
    latency_p99_ms: float


def scenarios(quick: bool) -> list[Scenario]:
    vectors = 10_000 if quick else 100_000
    return [
        Scenario("small_requests", 1, 32, "base64", duration=1.0 if quick else 10.0),
        Scenario("vectors_base64", 2048, 4, "base64", total_vectors=vectors),
        Scenario("vectors_float", 2048, 4, "float", total_vectors=vectors),
    ]


def make_texts(start: int, count: int) -> list[str]:
    """Distinct texts of about 15 tokens each."""
    template = "document {}: a short text about graphs, vectors and rate limits"
    return [template.format(number) for number in range(start, start + count)]


@contextlib.asynccontextmanager
async def child_simulator() -> AsyncIterator[str]:
    """Run `embedlimit simulate` in a child process and yield its base URL."""
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


@contextlib.asynccontextmanager
async def same_loop_simulator() -> AsyncIterator[str]:
    """Serve the simulator in this event loop and yield its base URL."""
    options: dict[str, Any] = {"rpm": None, "tpm": None, "request_window": None, "track_inputs": False}
    async with Simulator(keys=[KEY], max_request_tokens=10_000_000, **options) as sim:
        yield sim.base_url


async def run_scenario(session: aiohttp.ClientSession, base_url: str, scenario: Scenario) -> Result:
    """Keep `scenario.concurrency` requests in flight until the scenario's time or vector count."""
    latencies: list[float] = []
    counters = {"requests": 0, "vectors": 0, "errors": 0, "bytes": 0, "next_text": 0}
    started = time.perf_counter()
    keep_going = _stop_rule(scenario, counters, started)

    async def worker() -> None:
        while keep_going():
            texts = make_texts(counters["next_text"], scenario.inputs_per_request)
            counters["next_text"] += scenario.inputs_per_request
            await _one_request(session, base_url, scenario, texts, counters, latencies)

    await asyncio.gather(*(worker() for _ in range(scenario.concurrency)))
    return _result(scenario, counters, latencies, time.perf_counter() - started)


def _stop_rule(scenario: Scenario, counters: dict[str, int], started: float) -> Callable[[], bool]:
    if scenario.duration is not None:
        deadline = started + scenario.duration
        return lambda: time.perf_counter() < deadline
    total = scenario.total_vectors or 0
    return lambda: counters["next_text"] < total


async def _one_request(
    session: aiohttp.ClientSession,
    base_url: str,
    scenario: Scenario,
    texts: list[str],
    counters: dict[str, int],
    latencies: list[float],
) -> None:
    body = orjson.dumps({"model": MODEL, "input": texts, "encoding_format": scenario.encoding_format})
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    sent = time.perf_counter()
    async with session.post(f"{base_url}/embeddings", data=body, headers=headers) as response:
        raw = await response.read()
        status = response.status
    latencies.append((time.perf_counter() - sent) * 1000.0)
    counters["requests"] += 1
    counters["bytes"] += len(raw)
    received = len(orjson.loads(raw).get("data", [])) if status == 200 else 0
    if received != len(texts):
        counters["errors"] += 1
    counters["vectors"] += received


def _result(scenario: Scenario, counters: dict[str, int], latencies: list[float], seconds: float) -> Result:
    ordered = sorted(latencies) or [0.0]
    return Result(
        scenario=scenario.name,
        inputs_per_request=scenario.inputs_per_request,
        concurrency=scenario.concurrency,
        encoding_format=scenario.encoding_format,
        requests=counters["requests"],
        vectors=counters["vectors"],
        errors=counters["errors"],
        seconds=round(seconds, 3),
        requests_per_second=round(counters["requests"] / seconds, 1),
        vectors_per_second=round(counters["vectors"] / seconds, 1),
        megabytes_per_second=round(counters["bytes"] / seconds / 1e6, 1),
        latency_p50_ms=round(statistics.median(ordered), 2),
        latency_p99_ms=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    )


async def measure(quick: bool, same_loop: bool) -> list[Result]:
    server = same_loop_simulator() if same_loop else child_simulator()
    connector = aiohttp.TCPConnector(limit=64)
    async with server as base_url, aiohttp.ClientSession(connector=connector) as session:
        warm_up_counters = {"requests": 0, "vectors": 0, "errors": 0, "bytes": 0}
        await _one_request(session, base_url, scenarios(True)[0], ["warm-up"], warm_up_counters, [])
        return [await run_scenario(session, base_url, scenario) for scenario in scenarios(quick)]


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def print_table(results: list[Result]) -> None:
    print(
        f"{'scenario':<16} {'in/req':>6} {'flight':>6} {'requests/s':>11} {'vectors/s':>10} "
        f"{'MB/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    )
    for result in results:
        print(
            f"{result.scenario:<16} {result.inputs_per_request:>6} {result.concurrency:>6} "
            f"{result.requests_per_second:>11.1f} {result.vectors_per_second:>10.0f} "
            f"{result.megabytes_per_second:>7.1f} {result.latency_p50_ms:>8.1f} {result.latency_p99_ms:>8.1f} "
            f"{result.errors:>6}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="run each scenario for about a second")
    parser.add_argument("--same-loop", action="store_true", help="serve the simulator in the client's event loop")
    parser.add_argument("--output", type=Path, help="where to write the JSON (default: bench/results/...)")
    args = parser.parse_args(argv)

    results = asyncio.run(measure(args.quick, args.same_loop))
    report = {
        "benchmark": "simulator_ceiling",
        "quick": args.quick,
        "server": "same event loop as the client" if args.same_loop else "child process (embedlimit simulate)",
        "dimensions": 1536,
        "machine": machine(),
        "results": [asdict(result) for result in results],
    }
    print(json.dumps(report))
    print_table(results)

    output = args.output or RESULTS_DIR / ("simulator_ceiling_quick.json" if args.quick else "simulator_ceiling.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 1 if any(result.errors for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
