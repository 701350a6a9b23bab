"""Compare embedlimit with the clients people already use, on one simulator, workload and limits.

Peers:

- embedlimit;
- openai-python `AsyncOpenAI` with asyncio.gather and a semaphore, with default retries and with
  `max_retries=8`;
- the OpenAI Cookbook's parallel-processor algorithm (`_compare_cookbook.py`);
- langchain-openai `OpenAIEmbeddings.aembed_documents`;
- neo4j-graphrag `OpenAIEmbeddings` in threads;
- APOC `apoc.ml.openai.embedding` driven by `apoc.periodic.iterate` inside Neo4j, without and
  with its back-off options (`_compare_apoc.py`).

Each Python peer runs in its own process (`_compare_peers.py`), against an `embedlimit simulate`
process started fresh for each run, in real time (time scale 1), because most peers sleep in
real seconds. Scenarios: (a) limits known to the client, (b) limits learned, (c) two processes
sharing one key, (d) 5% HTTP 500 and 1% connection resets, (e) no limits, CPU per 100,000
vectors, (f) the Debian backfill into Neo4j, embedlimit's CLI against APOC.

Usage: `python bench/compare.py [--quick] [--apoc | --no-apoc] [--only abcdef] [--peers P,...]
[--output PATH]`. Quick mode runs tiny sizes without Neo4j in well under a minute. The tables go
to stdout and the raw figures to `bench/results/compare.json` (`compare_quick.json` with
`--quick`).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _compare_sim import SimulatorProcess, SimulatorSpec  # noqa: E402

from embedlimit._tokens import count_tokens_batch  # noqa: E402

RESULTS_DIR = HERE / "results"
PEERS_SCRIPT = HERE / "_compare_peers.py"
# The full data set sits in the shared folder beside the checkout; it is not copied into the repository.
DEBIAN_FULL = ROOT.parent / "shared" / "data" / "debian-packages.jsonl.gz"
DEBIAN_SAMPLE = ROOT / "examples" / "data" / "debian-packages-sample.jsonl"
KEY = "sk-bench-compare"
MAX_INPUT_TOKENS = 8191
MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_REQUEST = 300_000
PEER_TIMEOUT = 900.0
TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
"""The URL whose SHA-1 names tiktoken's cached cl100k_base file; used as a cache key, never fetched."""

PYTHON_PEERS = ("embedlimit", "openai", "openai-retries8", "cookbook", "langchain", "graphrag")


@dataclass(frozen=True)
class Sizes:
    """The workload sizes and limits of one benchmark run (full or quick)."""

    rpm: int
    tpm: int
    workload_tokens: int
    graphrag_inputs: int
    unlimited_inputs: int
    latency_ms: float
    latency_jitter_ms: float
    debian_file: Path
    backfill_rpm: int
    backfill_tpm: int


FULL = Sizes(
    rpm=3_000,
    tpm=1_000_000,
    workload_tokens=1_500_000,
    graphrag_inputs=4_000,
    unlimited_inputs=30_000,
    latency_ms=200,
    latency_jitter_ms=100,
    debian_file=DEBIAN_FULL,
    backfill_rpm=5_000,
    backfill_tpm=5_000_000,
)
QUICK = Sizes(
    rpm=3_000,
    tpm=1_000_000,
    workload_tokens=40_000,
    graphrag_inputs=40,
    unlimited_inputs=2_000,
    latency_ms=50,
    latency_jitter_ms=20,
    debian_file=DEBIAN_SAMPLE,
    backfill_rpm=5_000,
    backfill_tpm=5_000_000,
)


@dataclass(frozen=True)
class Scenario:
    """One comparison: its simulator, how many processes share the key, and which peers run."""

    name: str
    title: str
    spec: SimulatorSpec
    peers: tuple[str, ...]
    processes: int = 1
    limits_known: tuple[str, ...] = ()
    """Peers given the limits. The Cookbook always needs numbers, so without them it uses its script defaults."""


@dataclass
class Row:
    """The figures of one peer in one scenario."""

    peer: str
    inputs: int
    tokens: int
    wall_seconds: float
    floor_seconds: float
    naive_bound_seconds: float
    charged_floor_seconds: float
    """The floor for the tokens the simulator charged, which include requests resent after a fault."""
    rate_limited: int
    lost: int
    cpu_seconds: float
    peak_rss_mb: float
    requests: int
    statuses: dict[str, int]
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.wall_seconds / self.floor_seconds if self.floor_seconds > 0 else math.nan


def load_debian_texts(path: Path) -> list[str]:
    """Return `summary + blank line + description` of each package, as `backfill` builds it."""
    opener = gzip.open if path.suffix == ".gz" else open
    texts = []
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            package = json.loads(line)
            texts.append(f"{package.get('summary') or ''}\n\n{package.get('description') or ''}")
    return texts


def build_workload(texts: list[str], total_tokens: int) -> tuple[list[str], list[int]]:
    """Take texts in file order until `total_tokens`, skipping blank ones and any over the per-input limit.

    Every peer must be able to embed every input, so inputs longer than 8,191 tokens (two
    Debian descriptions) are left out. Scenario (f) keeps them.
    """
    counts = count_tokens_batch(texts)
    chosen: list[str] = []
    chosen_counts: list[int] = []
    for text, count in zip(texts, counts, strict=True):
        if count > MAX_INPUT_TOKENS or not text.strip():
            continue
        chosen.append(text)
        chosen_counts.append(count)
        if sum(chosen_counts) >= total_tokens:
            break
    return chosen, chosen_counts


def minimum_requests(counts: list[int]) -> int:
    """Count the requests a client needs at least, packing inputs up to the API's per-request limits."""
    requests, inputs, tokens = 0, 0, 0
    for count in counts:
        if requests == 0 or inputs + 1 > MAX_INPUTS_PER_REQUEST or tokens + count > MAX_TOKENS_PER_REQUEST:
            requests, inputs, tokens = requests + 1, 0, 0
        inputs += 1
        tokens += count
    return requests


def floor_seconds(tokens: int, requests: int, rpm: int, tpm: int) -> tuple[float, float]:
    """Return (floor, naive bound) in seconds for a job of `tokens` in `requests`.

    The naive bound is max(tokens / TPM, requests / RPM). The simulator's buckets start full, as
    OpenAI's do, so an ideal client spends one minute of capacity at once and then keeps to the
    refill rate: the floor is the naive bound minus that first minute, and never below zero.
    """
    naive, floor = 0.0, 0.0
    for amount, limit in ((tokens, tpm), (requests, rpm)):
        if limit > 0:
            naive = max(naive, 60.0 * amount / limit)
            floor = max(floor, 60.0 * (amount - limit) / limit)
    return floor, naive


def prepare_tiktoken_cache(directory: Path) -> None:
    """Put the offline cl100k_base data where tiktoken looks first, so langchain-openai never downloads it."""
    import tiktoken_ext  # type: ignore[import-untyped]

    source = Path(next(iter(tiktoken_ext.__path__))) / "data" / "cl100k_base.tiktoken"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, directory / hashlib.sha1(TIKTOKEN_URL.encode()).hexdigest())


def split_parts(items: list[str], parts: int) -> list[list[str]]:
    size = math.ceil(len(items) / parts)
    return [items[start : start + size] for start in range(0, len(items), size)]


class Runner:
    """Run the peers of each scenario and collect their rows."""

    def __init__(self, sizes: Sizes, workdir: Path, apoc: Any | None) -> None:
        self.sizes = sizes
        self.workdir = workdir
        self.apoc = apoc
        self.environment = {**os.environ, "OPENAI_API_KEY": KEY, "TIKTOKEN_CACHE_DIR": str(workdir / "tiktoken")}
        prepare_tiktoken_cache(workdir / "tiktoken")

    def run_python_peer(
        self, scenario: Scenario, peer: str, texts: list[str], counts: list[int]
    ) -> Row:
        """Run `peer` in `scenario.processes` processes on equal parts of `texts`, at the same time."""
        with SimulatorProcess(scenario.spec, KEY) as simulator:
            environment = {**self.environment, "OPENAI_BASE_URL": simulator.base_url}
            if peer in scenario.limits_known:
                environment |= {"COMPARE_RPM": str(scenario.spec.rpm), "COMPARE_TPM": str(scenario.spec.tpm)}
            results = self._run_children(peer, split_parts(texts, scenario.processes), environment)
            stats = simulator.stats()
        return self.row(scenario, peer, counts, results, stats)

    def _run_children(self, peer: str, parts: list[list[str]], environment: dict[str, str]) -> list[dict[str, Any]]:
        children = []
        for number, part in enumerate(parts):
            texts_path = self.workdir / f"texts-{number}.json"
            texts_path.write_text(json.dumps(part))
            output_path = self.workdir / f"result-{number}.json"
            output_path.unlink(missing_ok=True)
            command = [sys.executable, str(PEERS_SCRIPT), peer, str(texts_path), str(output_path)]
            process = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True)
            children.append((process, output_path))

        results = []
        for process, output_path in children:
            _, stderr = process.communicate(timeout=PEER_TIMEOUT)
            if process.returncode != 0 or not output_path.exists():
                raise RuntimeError(f"peer {peer} exited with code {process.returncode}:\n{stderr[-3000:]}")
            results.append(json.loads(output_path.read_text()))
        return results

    def row(
        self, scenario: Scenario, peer: str, counts: list[int], results: list[dict[str, Any]], stats: dict[str, Any]
    ) -> Row:
        return make_row(scenario, peer, counts, results, stats)


def make_row(
    scenario: Scenario, peer: str, counts: list[int], results: list[dict[str, Any]], stats: dict[str, Any]
) -> Row:
    """Combine the results of a peer's processes and the simulator's counters into one row."""
    requests = len(counts) if peer == "graphrag" else minimum_requests(counts)
    floor, naive = floor_seconds(sum(counts), requests, scenario.spec.rpm, scenario.spec.tpm)
    charged_floor, _ = floor_seconds(stats["tokens_accepted"], requests, scenario.spec.rpm, scenario.spec.tpm)
    notes = [error for result in results for error in result["errors"]][:3]
    return Row(
        peer=peer,
        inputs=len(counts),
        tokens=sum(counts),
        wall_seconds=max(r["finished_at"] for r in results) - min(r["started_at"] for r in results),
        floor_seconds=floor,
        naive_bound_seconds=naive,
        charged_floor_seconds=charged_floor,
        rate_limited=sum(stats["rate_limited"].values()),
        lost=sum(r["lost"] for r in results),
        cpu_seconds=sum(r["cpu_seconds"] for r in results),
        peak_rss_mb=max(r["peak_rss_mb"] for r in results),
        requests=stats["requests"],
        statuses=stats["requests_by_status"],
        notes=notes,
    )


def build_scenarios(sizes: Sizes, quick: bool, apoc: bool) -> list[Scenario]:
    """Return scenarios (a) to (e); scenario (f) runs through `run_backfill_scenario`."""
    limited = SimulatorSpec(sizes.rpm, sizes.tpm, sizes.latency_ms, sizes.latency_jitter_ms)
    faulty = replace(limited, fault_rates={"http_500": 0.05, "connection_reset": 0.01}, seed=7)
    unlimited = SimulatorSpec(0, 0)
    apoc_peers = ("apoc", "apoc-backoff") if apoc else ()
    if quick:
        everyone: tuple[str, ...] = ("embedlimit", "openai", "cookbook", "langchain", "graphrag")
        pair: tuple[str, ...] = ("embedlimit",)
        fault_peers: tuple[str, ...] = ("embedlimit",)
    else:
        everyone = PYTHON_PEERS
        pair = fault_peers = tuple(peer for peer in PYTHON_PEERS if peer != "graphrag")
    return [
        Scenario("a", "limits known to the client", limited, ("embedlimit", "cookbook"),
                 limits_known=("embedlimit", "cookbook")),
        Scenario("b", "limits unknown, learned from headers", limited, everyone + apoc_peers),
        Scenario("c", "two processes share one key", limited, pair + apoc_peers, processes=2,
                 limits_known=("cookbook",)),
        Scenario("d", "5% HTTP 500 and 1% connection resets", faulty, fault_peers + apoc_peers,
                 limits_known=("cookbook",)),
        Scenario("e", "no limits, zero latency: CPU per 100,000 vectors", unlimited,
                 ("embedlimit", "openai") if quick else ("embedlimit", "openai", "cookbook", "langchain"),
                 limits_known=("cookbook",)),
    ]


def workload_pool(texts: list[str]) -> list[str]:
    """Return the texts every peer can embed: not blank and at most 8,191 tokens."""
    counts = count_tokens_batch(texts)
    return [text for text, count in zip(texts, counts, strict=True) if text.strip() and count <= MAX_INPUT_TOKENS]


def distinct_texts(texts: list[str], count: int) -> list[str]:
    """Return `count` distinct texts, cycling through `texts` with a copy number appended."""
    result = []
    for position in range(count):
        text = texts[position % len(texts)]
        copy = position // len(texts)
        result.append(text if copy == 0 else f"{text}\n(copy {copy})")
    return result


def run_scenario(runner: Runner, scenario: Scenario, workload: list[str], counts: list[int]) -> list[Row]:
    rows = []
    for peer in scenario.peers:
        texts, peer_counts = workload, counts
        if peer == "graphrag":
            # One request per text makes a full run take len(workload) / RPM minutes; a prefix keeps it short.
            texts, peer_counts = workload[: runner.sizes.graphrag_inputs], counts[: runner.sizes.graphrag_inputs]
        started = time.monotonic()
        if peer.startswith("apoc"):
            assert runner.apoc is not None, "APOC peers run only with a Neo4j server"
            results, stats = runner.apoc.run(scenario.spec, peer, split_parts(texts, scenario.processes))
            row = runner.row(scenario, peer, peer_counts, results, stats)
        else:
            row = runner.run_python_peer(scenario, peer, texts, peer_counts)
        rows.append(row)
        elapsed = time.monotonic() - started
        print(f"  ({scenario.name}) {format_row(row)}  [{elapsed:.0f} s]", file=sys.stderr, flush=True)
    return rows


def format_row(row: Row) -> str:
    return (
        f"{row.peer:<16} wall {row.wall_seconds:7.1f} s  floor {row.floor_seconds:6.1f} s  "
        f"ratio {row.ratio:5.2f}  429s {row.rate_limited:5d}  lost {row.lost:6d}  "
        f"CPU {row.cpu_seconds:6.2f} s  RSS {row.peak_rss_mb:6.0f} MB"
    )


PEER_LABELS = {
    "embedlimit": "embedlimit",
    "openai": "openai-python gather, default retries",
    "openai-retries8": "openai-python gather, max_retries=8",
    "cookbook": "Cookbook parallel processor",
    "langchain": "langchain-openai aembed_documents",
    "graphrag": "neo4j-graphrag OpenAIEmbeddings",
    "apoc": "APOC periodic.iterate",
    "apoc-backoff": "APOC periodic.iterate, back-off on",
    "embedlimit-backfill": "embedlimit backfill (CLI)",
}


def markdown_table(scenario_name: str, rows: list[Row]) -> str:
    if scenario_name == "e":
        lines = ["| Client | Vectors | Wall s | CPU s | CPU s per 100,000 vectors | Peak RSS MB | Lost |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        for row in rows:
            per_100k = row.cpu_seconds * 100_000 / row.inputs
            lines.append(f"| {PEER_LABELS[row.peer]} | {row.inputs:,} | {row.wall_seconds:.1f} | "
                         f"{row.cpu_seconds:.2f} | {per_100k:.1f} | {row.peak_rss_mb:.0f} | {row.lost:,} |")
        return "\n".join(lines)
    lines = ["| Client | Inputs | Wall s | Floor s | Wall / floor | Wall / naive bound | Charged floor s | 429s "
             "| Lost | CPU s | Peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        naive = row.wall_seconds / row.naive_bound_seconds if row.naive_bound_seconds else math.nan
        cells = [
            PEER_LABELS[row.peer], f"{row.inputs:,}", f"{row.wall_seconds:.1f}", f"{row.floor_seconds:.1f}",
            f"{row.ratio:.2f}", f"{naive:.2f}", f"{row.charged_floor_seconds:.1f}", f"{row.rate_limited:,}",
            f"{row.lost:,}", f"{row.cpu_seconds:.2f}", f"{row.peak_rss_mb:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    import importlib.metadata as metadata

    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal"))
    versions = {"python": platform.python_version()}
    for package in ("embedlimit", "openai", "langchain-openai", "neo4j-graphrag", "neo4j", "aiohttp", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {"nproc": os.cpu_count(), "cpu_model": cpu_model, "memory_gb": round(memory_kb / 1024**2, 1),
            "versions": versions}


def git_state() -> dict[str, Any]:
    """Return the checkout's commit and whether embedlimit/ has uncommitted changes, since the package is editable."""
    def git(*arguments: str) -> str:
        completed = subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=False)
        return completed.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "embedlimit_changes": git("status", "--short", "embedlimit")}


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no Neo4j; for the test suite")
    parser.add_argument("--no-apoc", action="store_true", help="skip the APOC runs and scenario (f)")
    parser.add_argument("--apoc", action="store_true", help="also run APOC and (f) in quick mode (starts Neo4j)")
    parser.add_argument("--only", default="abcdef", help="scenario letters to run, such as 'ab' (default: abcdef)")
    parser.add_argument("--peers", help="comma-separated peers to run, such as 'embedlimit,cookbook' (default: all)")
    parser.add_argument("--output", type=Path, help="JSON output path (default: bench/results/compare.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    sizes = QUICK if arguments.quick else FULL
    use_apoc = arguments.apoc if arguments.quick else not arguments.no_apoc
    output = arguments.output or RESULTS_DIR / ("compare_quick.json" if arguments.quick else "compare.json")
    report: dict[str, Any] = {"quick": arguments.quick, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                              "machine": machine_info(), "sizes": {k: str(v) for k, v in asdict(sizes).items()},
                              "git": git_state(), "load_at_start": load_average(), "scenarios": {}}

    debian = load_debian_texts(sizes.debian_file)
    workload, counts = build_workload(debian, sizes.workload_tokens)
    with tempfile.TemporaryDirectory(prefix="embedlimit-compare-") as workdir, apoc_context(use_apoc) as apoc:
        runner = Runner(sizes, Path(workdir), apoc)
        if apoc is not None:
            report["machine"]["versions"].update(apoc.versions())
        for scenario in build_scenarios(sizes, arguments.quick, use_apoc):
            if scenario.name not in arguments.only:
                continue
            if arguments.peers:
                scenario = replace(scenario, peers=tuple(p for p in scenario.peers if p in arguments.peers.split(",")))
            texts, text_counts = workload, counts
            if scenario.name == "e":
                texts = distinct_texts(workload_pool(debian), sizes.unlimited_inputs)
                text_counts = count_tokens_batch(texts)
            print(f"scenario ({scenario.name}) {scenario.title}: {len(texts):,} inputs, "
                  f"{sum(text_counts):,} tokens", file=sys.stderr, flush=True)
            rows = run_scenario(runner, scenario, texts, text_counts)
            report["scenarios"][scenario.name] = scenario_report(scenario, rows)
        if apoc is not None and "f" in arguments.only:
            report["scenarios"]["f"] = run_backfill_scenario(apoc, sizes, runner.environment, Path(workdir))

    report["load_at_end"] = load_average()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    for name, scenario_result in report["scenarios"].items():
        print(f"\n### ({name}) {scenario_result['title']}\n")
        print(scenario_result["table"])
    return 0


def scenario_report(scenario: Scenario, rows: list[Row]) -> dict[str, Any]:
    return {
        "title": scenario.title,
        "simulator": asdict(scenario.spec),
        "processes": scenario.processes,
        "limits_known": list(scenario.limits_known),
        "rows": [asdict(row) | {"ratio": row.ratio} for row in rows],
        "table": markdown_table(scenario.name, rows),
    }


def run_backfill_scenario(apoc: Any, sizes: Sizes, environment: dict[str, str], workdir: Path) -> dict[str, Any]:
    """Scenario (f): embed every Debian package in Neo4j with `embedlimit backfill`, then with APOC."""
    from _compare_apoc import BackfillComparison

    texts = load_debian_texts(sizes.debian_file)
    counts = count_tokens_batch(texts)
    names = [json.loads(line)["name"] for line in _read_lines(sizes.debian_file)]
    overlong = {name for name, count in zip(names, counts, strict=True) if count > MAX_INPUT_TOKENS}
    spec = SimulatorSpec(sizes.backfill_rpm, sizes.backfill_tpm, sizes.latency_ms, sizes.latency_jitter_ms)
    scenario = Scenario("f", f"Debian backfill into Neo4j ({len(texts):,} packages)", spec, ())
    print(f"scenario (f) {scenario.title}: {sum(counts):,} tokens", file=sys.stderr, flush=True)

    comparison = BackfillComparison(apoc, environment, workdir)
    load_seconds = comparison.load(sizes.debian_file)
    rows, raw = [], []
    for peer in ("embedlimit-backfill", "apoc", "apoc-backoff"):
        result = comparison.run_embedlimit(spec) if peer == "embedlimit-backfill" else comparison.run_apoc(spec, peer)
        missing, wrong, total = comparison.count_lost(overlong)
        result |= {"lost": missing + wrong, "wrong_in_sample": wrong, "packages": total}
        row = make_row(scenario, peer, counts, [result], result.pop("stats"))
        rows.append(row)
        raw.append(result)
        print(f"  (f) {format_row(row)}", file=sys.stderr, flush=True)
        comparison.remove_vectors()
    report = scenario_report(scenario, rows)
    report |= {"load_seconds": load_seconds, "overlong_packages": len(overlong), "raw": raw}
    return report


def _read_lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        yield from lines


class _NoApoc:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


def apoc_context(enabled: bool) -> Any:
    """Return a context manager that yields the APOC runner (a Neo4j server), or None."""
    if not enabled:
        return _NoApoc()
    from _compare_apoc import ApocRunner

    return ApocRunner(KEY)


if __name__ == "__main__":
    sys.exit(main())
