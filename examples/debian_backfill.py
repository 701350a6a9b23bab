"""The main job, end to end: Debian packages into Neo4j, embedded through a rate-limited API.

    python examples/debian_backfill.py [PACKAGES_FILE]

1. Neo4j: the server at NEO4J_URI when set, else a local test server (Java 17 and Maven). Its
   data stays in .cache/demo-neo4j, so a second run resumes instead of starting over.
2. The API: the OpenAI simulator from `embedlimit.testing`, in this process, with the limits of
   a tier-1 key (3,000 RPM and 1,000,000 TPM) and its time sped up by --time-scale, so that the
   full file's limit-minutes pass in seconds.
3. `embedlimit load-debian FILE`, then `embedlimit backfill ...` with a progress bar, and the
   vector index; both run as the command a user would type.
4. The five nearest packages to a sample query, through `db.index.vector.queryNodes`. The
   simulator's vectors come from the words of each text, so the neighbours share words with the
   query; a real embedding model would also find texts with the same meaning in other words.

Without a file it loads the 500-package sample in examples/data; give the path of the full
`debian-packages.jsonl.gz` to embed all 63,436 packages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from pathlib import Path

import neo4j

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "data" / "debian-packages-sample.jsonl"
DEMO_KEY = "sk-demo-embedlimit-local"
MODEL = "text-embedding-3-small"
INDEX = "package_embedding_vector"

sys.path.insert(0, str(ROOT))

from embedlimit import Embedder  # noqa: E402
from embedlimit._packing import prepare_texts  # noqa: E402
from embedlimit.testing import Simulator, expected_vector  # noqa: E402


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", type=Path, default=SAMPLE, help="packages JSON Lines file (gzip allowed)")
    # At 4, the full file's tokens need about 760 packages a second, which a 2-core machine
    # running Neo4j, the simulator and the client together can sustain, so the limits set the pace.
    parser.add_argument("--time-scale", type=float, default=4.0,
                        help="how many times faster than real time the simulated API runs (default: %(default)s)")
    parser.add_argument("--rpm", type=int, default=3000, help="simulated requests per minute (default: %(default)s)")
    parser.add_argument("--tpm", type=int, default=1_000_000,
                        help="simulated tokens per minute (default: %(default)s)")
    parser.add_argument("--query", default="lossless audio codec library",
                        help="text whose nearest packages are printed at the end")
    parser.add_argument("--verify", action="store_true",
                        help="at the end, check that every package has exactly the simulator's vector for its text")
    return parser.parse_args()


async def run_command(environment: dict[str, str], *arguments: str) -> None:
    print(f"$ embedlimit {shlex.join(arguments)}", flush=True)
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "embedlimit", *arguments, env=environment)
    if await process.wait() != 0:
        raise SystemExit(f"embedlimit {arguments[0]} failed with exit code {process.returncode}")


async def print_nearest(uri: str, simulator: Simulator, query: str) -> None:
    async with Embedder(MODEL, api_key=DEMO_KEY, base_url=simulator.base_url, clock=simulator.clock) as embedder:
        [vector] = await embedder.embed([query])
    assert vector is not None
    async with neo4j.AsyncGraphDatabase.driver(uri, auth=_auth()) as driver:
        records, _, _ = await driver.execute_query(
            "CALL db.index.vector.queryNodes($index, 5, $vector) YIELD node, score "
            "RETURN node.name AS name, node.summary AS summary, score",
            index=INDEX, vector=vector.tolist(),
        )
    print(f"\nNearest packages to {query!r}:")
    for record in records:
        print(f"  {record['score']:.3f}  {record['name']}: {record['summary']}")


async def verify(uri: str) -> None:
    """Compare every package's stored vector with the simulator's vector for its text."""
    checked = wrong = missing = 0
    after = ""
    async with neo4j.AsyncGraphDatabase.driver(uri, auth=_auth()) as driver:
        while True:
            records, _, _ = await driver.execute_query(
                "MATCH (p:Package) WHERE p.name > $after RETURN p.name AS name, p.summary AS summary, "
                "p.description AS description, p.embedding AS embedding ORDER BY p.name LIMIT 2000",
                after=after,
            )
            if not records:
                break
            for record in records:
                checked += 1
                text = sent_text(f"{record['summary'] or ''}\n\n{record['description'] or ''}")
                if record["embedding"] is None:
                    missing += 1
                elif not _close(record["embedding"], expected_vector(text, MODEL)):
                    wrong += 1
            after = records[-1]["name"]
    print(f"\nverified {checked:,} packages: {checked - wrong - missing:,} with the expected vector, "
          f"{wrong:,} with another vector, {missing:,} without one")
    if wrong or missing:
        raise SystemExit(1)


def sent_text(text: str) -> str:
    """Return the text as the embedder sends it: cut to 8,192 tokens when longer (its default policy)."""
    [piece] = prepare_texts([text]).pieces
    return piece.text


def _close(stored: list[float], expected: list[float]) -> bool:
    return len(stored) == len(expected) and max(abs(a - b) for a, b in zip(stored, expected, strict=True)) <= 1e-6


def _auth() -> tuple[str, str] | None:
    password = os.environ.get("NEO4J_PASSWORD")
    return (os.environ.get("NEO4J_USERNAME", "neo4j"), password) if password else None


async def main(arguments: argparse.Namespace, uri: str) -> None:
    async with Simulator(rpm=arguments.rpm, tpm=arguments.tpm, keys=[DEMO_KEY], time_scale=arguments.time_scale,
                         latency_base=0.2, latency_per_token=0.000_01, latency_jitter=0.1,
                         track_inputs=False) as simulator:
        environment = {**os.environ, "NEO4J_URI": uri, "OPENAI_API_KEY": DEMO_KEY,
                       "OPENAI_BASE_URL": simulator.base_url}
        await run_command(environment, "load-debian", str(arguments.file))
        await run_command(environment, "backfill", "--label", "Package", "--text-template",
                          "{summary}\\n\\n{description}", "--key-property", "name", "--model", MODEL,
                          "--create-index", "--clock-scale", str(arguments.time_scale),
                          "--dead-letter", str(ROOT / ".cache" / "Package-dead-letters.jsonl"))
        await print_nearest(uri, simulator, arguments.query)
    if arguments.verify:
        await verify(uri)


def start_local_neo4j() -> tuple[object, str]:
    from tests.neo4j.server import Neo4jTestServer

    data = ROOT / ".cache" / "demo-neo4j"
    data.mkdir(parents=True, exist_ok=True)
    print("Starting a local Neo4j 5.26 (set NEO4J_URI to use your own server) ...", flush=True)
    server = Neo4jTestServer(data_dir=data)
    uri = server.start()
    return server, uri


if __name__ == "__main__":
    arguments = parse_arguments()
    if not arguments.file.is_file():
        raise SystemExit(f"{arguments.file} is not a file; give the path of a packages JSON Lines file")
    (ROOT / ".cache").mkdir(exist_ok=True)
    server = None
    uri = os.environ.get("NEO4J_URI")
    if not uri:
        server, uri = start_local_neo4j()
    try:
        asyncio.run(main(arguments, uri))
    finally:
        if server is not None:
            server.stop()  # type: ignore[attr-defined]
