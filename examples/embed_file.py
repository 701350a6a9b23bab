"""Embed a file of texts and write the vectors as JSON Lines.

The input is plain text with one text per line, or JSON Lines (`.jsonl`) with a `text` field and
an optional `id` field on each line. Each output line is `{"id": ..., "embedding": [...]}`, where
`id` is the input's `id` or else its line number (from 1). Texts that fail (empty lines, texts the
server rejects, requests that fail after all retries) go to `OUTPUT.failed.jsonl` with the reason,
and the other texts still get their vectors.

With `OPENAI_BASE_URL` unset, the texts go to an `embedlimit.testing.Simulator` started in this
process, so the example runs offline and costs nothing. Otherwise `OPENAI_API_KEY` (one key or
several separated by commas) and `OPENAI_BASE_URL` choose the server:

    python examples/embed_file.py texts.txt vectors.jsonl
    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... python examples/embed_file.py texts.jsonl out.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from embedlimit._embedder import Embedder
from embedlimit._results import EmbeddingResult
from embedlimit.testing import Simulator

SIMULATOR_KEY = "sk-example-simulator"


def read_items(path: Path) -> Iterator[tuple[Any, str | None]]:
    """Yield `(id, text)` for each line; a JSONL line without a string `text` yields None, which fails."""
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not jsonl:
                yield number, line.rstrip("\r\n")
                continue
            record = orjson.loads(line) if line.strip() else {}
            if not isinstance(record, dict):
                yield number, None
                continue
            text = record.get("text")
            yield record.get("id", number), text if isinstance(text, str) else None


def vector_json(result: EmbeddingResult[Any]) -> bytes:
    vector = result.vector
    assert vector is not None
    values = vector.tolist() if hasattr(vector, "tolist") else list(vector)
    return orjson.dumps({"id": result.key, "embedding": values}) + b"\n"


async def embed_file(source: Path, target: Path, embedder: Embedder) -> tuple[int, int]:
    """Write the vectors of `source` to `target` and the failures beside it; return both counts."""
    failed_path = target.with_name(target.name + ".failed.jsonl")
    written = failed = 0
    with target.open("wb") as output, failed_path.open("wb") as failures:
        async for result in embedder.embed_stream(read_items(source)):
            if result.ok:
                output.write(vector_json(result))
                written += 1
            else:
                failures.write(orjson.dumps({"id": result.key, "reason": result.reason}) + b"\n")
                failed += 1
    if not failed:
        failed_path.unlink()
    return written, failed


async def main_async(args: argparse.Namespace) -> int:
    async with contextlib.AsyncExitStack() as stack:
        settings: dict[str, Any] = {"model": args.model, "dimensions": args.dimensions}
        if not os.environ.get("OPENAI_BASE_URL"):
            simulator = await stack.enter_async_context(Simulator())
            settings.update(base_url=simulator.base_url, api_key=SIMULATOR_KEY)
            print(f"OPENAI_BASE_URL is not set: using the simulator at {simulator.base_url}", file=sys.stderr)
        embedder = await stack.enter_async_context(Embedder(**settings))

        written, failed = await embed_file(args.input, args.output, embedder)
        metrics = embedder.metrics()

    cost = metrics.estimated_cost_usd
    cost_text = f"${cost:.6f} (estimate)" if cost is not None else "unknown for this model"
    print(
        f"{written} vectors written to {args.output}, {failed} texts failed; {metrics.requests} requests, "
        f"{metrics.tokens} tokens, {metrics.retries} retries, cost {cost_text}",
        file=sys.stderr,
    )
    return 0 if not failed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Embed a file of texts and write the vectors as JSON Lines.")
    parser.add_argument("input", type=Path, help="text file (one text per line) or .jsonl with a `text` field")
    parser.add_argument("output", type=Path, help="JSON Lines file to write the vectors to")
    parser.add_argument("--model", default="text-embedding-3-small", help="embedding model (default: %(default)s)")
    parser.add_argument("--dimensions", type=int, help="shorten the vectors to this many dimensions")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
