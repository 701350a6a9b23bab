"""Measure how close RateLimiter runs to the simulator's rate limits, and how few 429s it causes.

Each scenario starts a fresh `embedlimit.testing.Simulator` on 127.0.0.1 in a child process, so
that serving does not compete with the client for its event loop. Client and simulator both
read time through `ScaledClock(time_scale)`, which scales the same system-wide monotonic clock.
One request under a separate warm-up key, with its own limits, loads the server's tokenizer
before the measured client starts. The client is a small loop of aiohttp, `RateLimiter`,
`RetryPolicy` and `call_with_retries`, with 64 concurrent workers.

Scenarios:

1. steady, limits learned: the client gets no RPM or TPM and paces from the headers alone.
   Reports the achieved fraction of the binding limit after a warm-up minute (target >= 97%)
   and the fraction of responses that are 429s (target < 0.5%). Run once token-bound (10 inputs
   of about 95 tokens, 1,200 RPM, 120,000 TPM) and once request-bound (1 input, 600 RPM).
2. steady, limits given: the same with both limits passed to `RateLimiter` up front.
3. short job, limits learned: a fixed job of a few limit-minutes of tokens. Reports the time
   to finish against the floor, which is the time an ideal client needs when it spends the full
   starting bucket at once and then keeps to the refill rate and the request window (target
   within 5% of the floor).
4. insufficient quota: the key runs out of quota mid-run. Reports how many requests the client
   starts after the first `insufficient_quota` answer arrives (target: at most one).

Usage: `python bench/limiter_efficiency.py [--quick] [--output PATH]`. The table goes to stdout
and the figures to `bench/results/limiter_efficiency.json` (`..._quick.json` with `--quick`).
All durations in the output are simulated seconds, except `real_seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from embedlimit._clock import Clock, ScaledClock
from embedlimit._errors import FatalError, RateLimitError, error_from_exception, error_from_response
from embedlimit._headers import parse_rate_limit_headers
from embedlimit._limiter import RateLimiter, Ticket
from embedlimit._retry import RetryPolicy, call_with_retries
from embedlimit._tokens import count_tokens_batch
from embedlimit.testing import Simulator
from embedlimit.testing._limits import RateLimits

SCRIPT = str(Path(__file__).resolve())
RESULTS_DIR = Path(__file__).resolve().parent / "results"
MODEL = "text-embedding-3-small"
KEY = "sk-bench-limiter"
WARMUP_KEY = "sk-bench-warmup"
WORDS = [
    "graph",
    "node",
    "edge",
    "vector",
    "index",
    "query",
    "package",
    "debian",
    "library",
    "version",
    "depends",
    "maintainer",
    "section",
    "priority",
    "archive",
    "mirror",
    "source",
    "binary",
    "build",
    "release",
    "stable",
    "testing",
]


@dataclass(frozen=True)
class Scenario:
    """One workload: the simulator's limits, the requests, and how long or how much to send."""

    name: str
    rpm: int
    tpm: int
    limits_given: bool
    inputs_per_request: int
    words_per_input: int
    duration: float | None = None
    job_requests: int | None = None
    quota_tokens: int | None = None
    concurrency: int = 64
    time_scale: float = 30.0
    latency: float = 0.2
    latency_jitter: float = 0.1


@dataclass
class Outcome:
    """Responses, accepted tokens and send times that the client recorded in one scenario."""

    responses: Counter[int] = field(default_factory=Counter)
    accepted: list[tuple[float, int]] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    retries: int = 0
    fatal_at: float | None = None
    fatal_errors: Counter[str] = field(default_factory=Counter)
    started_at: float = 0.0
    finished_at: float = 0.0


class BenchClient:
    """A minimal embeddings client: limiter, retry policy, stop on the first fatal error."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, limiter: RateLimiter, clock: Clock, outcome: Outcome
    ) -> None:
        self.session = session
        self.url = url
        self.limiter = limiter
        self.clock = clock
        self.outcome = outcome
        self.policy = RetryPolicy(max_attempts=20, max_delay=10.0, rng=random.Random(5))
        self.stopped = asyncio.Event()

    async def embed(self, texts: list[str], tokens: int) -> None:
        """Send one request until it succeeds, fails for good, or the run stops."""

        def count_retry(attempt: int, error: BaseException, delay: float) -> None:
            self.outcome.retries += 1

        try:
            await call_with_retries(
                lambda attempt: self._attempt(texts, tokens, attempt), self.policy, self.clock, count_retry
            )
        except FatalError as error:
            if not self.stopped.is_set():
                self.outcome.fatal_at = self.clock.now()
                self.stopped.set()
            self.outcome.fatal_errors[type(error).__name__] += 1

    async def _attempt(self, texts: list[str], tokens: int, attempt: int) -> None:
        ticket = await self.limiter.acquire(tokens=tokens)
        if self.stopped.is_set():
            self.limiter.settle(ticket)
            return
        self.outcome.sent_at.append(self.clock.now())
        body = {"model": MODEL, "input": texts, "encoding_format": "base64", "dimensions": 8}
        headers = {"Authorization": f"Bearer {KEY}"}
        try:
            async with self.session.post(self.url, data=orjson.dumps(body), headers=headers) as response:
                payload = await response.read()
                status = response.status
                response_headers = response.headers
        except aiohttp.ClientError as error:
            self.limiter.settle(ticket)
            raise error_from_exception(error, attempt=attempt) or error from error
        except BaseException:
            self.limiter.settle(ticket)
            raise
        self._settle(ticket, status, response_headers, payload, attempt)

    def _settle(self, ticket: Ticket, status: int, headers: Mapping[str, str], payload: bytes, attempt: int) -> None:
        now = self.clock.now()
        self.outcome.responses[status] += 1
        if status == 200:
            used = int(orjson.loads(payload)["usage"]["prompt_tokens"])
            self.limiter.settle(ticket, parse_rate_limit_headers(headers), tokens_used=used, status=status)
            self.outcome.accepted.append((now, used))
            return
        error = error_from_response(status, headers, payload, attempt=attempt)
        limit_type = error.limit_type if isinstance(error, RateLimitError) else None
        info = parse_rate_limit_headers(headers, payload)
        self.limiter.settle(ticket, info, status=status, limit_type=limit_type)
        raise error


def make_texts(count: int, words_per_input: int, seed: int) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(words_per_input)) for _ in range(count)]
    return texts, count_tokens_batch(texts)


def request_stream(scenario: Scenario) -> Iterator[tuple[list[str], int]]:
    """Yield (texts, tokens) forever, cycling through a fixed set of texts tokenized up front."""
    texts, counts = make_texts(257, scenario.words_per_input, seed=11)
    return _cycle_requests(scenario.inputs_per_request, texts, counts)


def _cycle_requests(inputs_per_request: int, texts: list[str], counts: list[int]) -> Iterator[tuple[list[str], int]]:
    start = 0
    while True:
        indices = [(start + offset) % len(texts) for offset in range(inputs_per_request)]
        start += inputs_per_request
        yield [texts[index] for index in indices], sum(counts[index] for index in indices)


def simulator_options(scenario: Scenario) -> dict[str, Any]:
    return {
        "rpm": scenario.rpm,
        "tpm": scenario.tpm,
        "keys": [KEY, WARMUP_KEY],
        "limit_scope": "key",
        "time_scale": scenario.time_scale,
        "latency_base": scenario.latency,
        "latency_jitter": scenario.latency_jitter,
        "quota_tokens": scenario.quota_tokens,
        "track_inputs": False,
    }


async def serve_simulator(options: dict[str, Any]) -> None:
    """Run a simulator until standard input closes, after printing its port (the --serve mode)."""
    async with Simulator(**options) as simulator:
        print(f"PORT {simulator.port}", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


@contextlib.asynccontextmanager
async def simulator_process(options: dict[str, Any]) -> AsyncIterator[str]:
    """Start the simulator in a child process on 127.0.0.1 and yield its embeddings URL.

    A separate process keeps the server's work off the client's event loop, as with a real API.
    Both processes read time through `ScaledClock(time_scale)`, which scales the same system-wide
    monotonic clock, so they agree on every duration.
    """
    command = [sys.executable, SCRIPT, "--serve", json.dumps(options)]
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        if not line.startswith(b"PORT "):
            raise RuntimeError(f"the simulator process did not start; it printed {line[:200]!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1/embeddings"
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()


async def warm_up(session: aiohttp.ClientSession, url: str) -> None:
    """Send one request under a key with its own limits, so the server loads its tokenizer now.

    Otherwise the first measured request, the probe, would wait for that load, which takes a
    few hundred real milliseconds: many simulated seconds under a ScaledClock.
    """
    body = {"model": MODEL, "input": ["warm up"], "dimensions": 8}
    headers = {"Authorization": f"Bearer {WARMUP_KEY}"}
    async with session.post(url, data=orjson.dumps(body), headers=headers) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"the warm-up request failed with HTTP {response.status}")


async def run_scenario(scenario: Scenario) -> Outcome:
    outcome = Outcome()
    stream = request_stream(scenario)
    clock = ScaledClock(scenario.time_scale)
    async with simulator_process(simulator_options(scenario)) as url:
        limits = (scenario.rpm, scenario.tpm) if scenario.limits_given else (None, None)
        limiter = RateLimiter(*limits, clock=clock)
        connector = aiohttp.TCPConnector(limit=scenario.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            await warm_up(session, url)
            client = BenchClient(session, url, limiter, clock, outcome)
            outcome.started_at = clock.now()
            await _drive(client, scenario, clock, stream)
            outcome.finished_at = clock.now()
    return outcome


async def _drive(
    client: BenchClient, scenario: Scenario, clock: Clock, stream: Iterator[tuple[list[str], int]]
) -> None:
    """Run `concurrency` workers over the request stream until the duration or the job ends."""
    if scenario.job_requests is not None:
        stream = itertools.islice(stream, scenario.job_requests)
    deadline = clock.now() + scenario.duration if scenario.duration is not None else math.inf

    async def worker() -> None:
        for texts, tokens in stream:
            if client.stopped.is_set() or clock.now() >= deadline:
                return
            await client.embed(texts, tokens)

    await asyncio.gather(*(worker() for _ in range(scenario.concurrency)))


def ideal_job_time(scenario: Scenario) -> float:
    """Return the floor: when an ideal client's last request of the job is admitted, plus latency.

    The ideal client sends each request at the first moment the simulator's own limits (a full
    starting bucket, the refill rate and the request window) admit it.
    """
    assert scenario.job_requests is not None
    limits = RateLimits(scenario.rpm, scenario.tpm, 0.0, request_window=1.0, count_rejected=False)
    now = 0.0
    for _, tokens in itertools.islice(request_stream(scenario), scenario.job_requests):
        for _ in range(1000):
            decision = limits.admit(tokens, now)
            if decision.accepted:
                break
            now += max(decision.delay, 1e-6)
    return now + scenario.latency


def summarize_steady(scenario: Scenario, outcome: Outcome, warmup: float) -> dict[str, Any]:
    start = outcome.started_at + warmup
    end = outcome.started_at + (scenario.duration or 0.0)
    window = end - start
    in_window = [(moment, used) for moment, used in outcome.accepted if start <= moment < end]
    tokens_fraction = sum(used for _, used in in_window) / (scenario.tpm / 60.0 * window)
    requests_fraction = len(in_window) / (scenario.rpm / 60.0 * window)
    responses = sum(outcome.responses.values())
    return {
        "binding_limit": "tokens" if tokens_fraction >= requests_fraction else "requests",
        "achieved_fraction": max(tokens_fraction, requests_fraction),
        "tokens_fraction": tokens_fraction,
        "requests_fraction": requests_fraction,
        "responses": responses,
        "responses_429": outcome.responses[429],
        "fraction_429": outcome.responses[429] / responses if responses else 0.0,
        "retries": outcome.retries,
        "measured_window_seconds": window,
    }


def summarize_job(scenario: Scenario, outcome: Outcome) -> dict[str, Any]:
    elapsed = outcome.finished_at - outcome.started_at
    floor = ideal_job_time(scenario)
    return {
        "job_requests": scenario.job_requests,
        "job_tokens": sum(used for _, used in outcome.accepted),
        "completed_requests": len(outcome.accepted),
        "elapsed_seconds": elapsed,
        "floor_seconds": floor,
        "ratio_to_floor": elapsed / floor,
        "responses_429": outcome.responses[429],
        "retries": outcome.retries,
    }


def summarize_quota(outcome: Outcome) -> dict[str, Any]:
    fatal_at = outcome.fatal_at
    sent_after = sum(1 for moment in outcome.sent_at if fatal_at is not None and moment > fatal_at)
    return {
        "stopped": fatal_at is not None,
        "requests_sent": len(outcome.sent_at),
        "requests_sent_after_quota_answer": sent_after,
        "quota_answers": outcome.fatal_errors.get("QuotaExceededError", 0),
        "completed_requests": len(outcome.accepted),
    }


def scenarios(quick: bool) -> list[tuple[str, Scenario]]:
    """Return the scenarios with their kind ("steady", "job" or "quota").

    Scales: a ScaledClock multiplies this machine's scheduling jitter (a few real milliseconds)
    by its scale, while the server's request window stays 1 simulated second. So request-bound
    runs use a low scale, and token-bound runs, which a token bucket does not make jitter
    sensitive, a higher one. `--quick` runs everything short and fast, which skews the figures.
    """
    token_bound = {"rpm": 1200, "tpm": 120_000, "inputs_per_request": 10, "words_per_input": 90}
    request_bound = {"rpm": 600, "tpm": 1_000_000, "inputs_per_request": 1, "words_per_input": 90}
    token_steady = {"duration": 60.0 if quick else 480.0, "time_scale": 30.0 if quick else 10.0}
    request_steady = {"duration": 60.0 if quick else 360.0, "time_scale": 30.0 if quick else 4.0}
    scale = 30.0 if quick else 10.0
    job = Scenario(
        "short_job_learned",
        rpm=3000,
        tpm=120_000,
        limits_given=False,
        inputs_per_request=10,
        words_per_input=90,
        job_requests=120 if quick else 360,
        time_scale=scale,
    )
    quota = Scenario(
        "insufficient_quota",
        rpm=3000,
        tpm=1_000_000,
        limits_given=False,
        inputs_per_request=4,
        words_per_input=90,
        duration=30.0 if quick else 60.0,
        quota_tokens=50_000,
        time_scale=scale,
    )
    return [
        ("steady", Scenario("steady_tokens_learned", limits_given=False, **token_bound, **token_steady)),
        ("steady", Scenario("steady_tokens_given", limits_given=True, **token_bound, **token_steady)),
        ("steady", Scenario("steady_requests_learned", limits_given=False, **request_bound, **request_steady)),
        ("steady", Scenario("steady_requests_given", limits_given=True, **request_bound, **request_steady)),
        ("job", job),
        ("quota", quota),
    ]


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'scenario':<26} {'result':<58} target")
    for row in rows:
        kind = row["kind"]
        if kind == "steady":
            result = (
                f"{row['achieved_fraction']:.2%} of {row['binding_limit']} limit, "
                f"429s {row['fraction_429']:.2%} ({row['responses_429']}/{row['responses']})"
            )
            target = ">= 97%, < 0.5%"
        elif kind == "job":
            result = (
                f"{row['elapsed_seconds']:.1f} s vs floor {row['floor_seconds']:.1f} s (x{row['ratio_to_floor']:.3f})"
            )
            target = "<= x1.05"
        else:
            result = f"stopped={row['stopped']}, sent after quota answer: {row['requests_sent_after_quota_answer']}"
            target = "<= 1"
        print(f"{row['name']:<26} {result:<58} {target}")


async def run_all(quick: bool) -> list[dict[str, Any]]:
    rows = []
    for kind, scenario in scenarios(quick):
        real_start = time.perf_counter()
        outcome = await run_scenario(scenario)
        if kind == "steady":
            figures = summarize_steady(scenario, outcome, warmup=20.0 if quick else 60.0)
        elif kind == "job":
            figures = summarize_job(scenario, outcome)
        else:
            figures = summarize_quota(outcome)
        real_seconds = time.perf_counter() - real_start
        rows.append(
            {"name": scenario.name, "kind": kind, **figures, "real_seconds": real_seconds, "scenario": asdict(scenario)}
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="short runs (a few seconds each) to check the script works"
    )
    parser.add_argument("--output", type=Path, help="JSON file for the figures (default: bench/results/...)")
    parser.add_argument("--serve", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.serve:
        asyncio.run(serve_simulator(json.loads(args.serve)))
        return 0

    rows = asyncio.run(run_all(args.quick))
    print_table(rows)
    default_name = "limiter_efficiency_quick.json" if args.quick else "limiter_efficiency.json"
    output: Path = args.output or RESULTS_DIR / default_name
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_after": os.getloadavg(),
        "quick": args.quick,
        "scenarios": rows,
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
