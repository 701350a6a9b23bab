"""Run one embeddings client over a workload, in its own process, for `bench/compare.py`.

Usage: `python bench/_compare_peers.py PEER TEXTS_JSON OUTPUT_JSON` with the simulator's base URL
in `OPENAI_BASE_URL`, its key in `OPENAI_API_KEY`, and optional known limits in
`COMPARE_RPM` / `COMPARE_TPM`. The child writes the embedding phase's wall time, CPU seconds and
peak RSS, then checks every vector against `embedlimit.testing.expected_vector` (outside the
measured phase) and writes how many inputs lack a correct vector.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _compare_cookbook import CookbookProcessor, make_jobs

from embedlimit.testing import expected_vector

MODEL = "text-embedding-3-small"
INPUTS_PER_REQUEST = 100
"""Inputs per request for the hand-written clients (openai-python gather, Cookbook)."""
GATHER_CONCURRENCY = 10
GRAPHRAG_THREADS = 16
COOKBOOK_DEFAULT_RPM = 1_500
COOKBOOK_DEFAULT_TPM = 125_000
"""The Cookbook script's default limits (half of 3,000 RPM and 250,000 TPM), used when none are known."""

Vectors = dict[int, Any]
"""Vectors by input position: lists of floats, numpy arrays or `array.array`s, as each client returns them."""


def base_url() -> str:
    """Return the simulator's base URL; anything but a local address is rejected."""
    url = os.environ["OPENAI_BASE_URL"]
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit(f"OPENAI_BASE_URL must be a simulator on http://127.0.0.1, got {url!r}")
    return url


def api_key() -> str:
    return os.environ["OPENAI_API_KEY"]


def known_limits() -> tuple[int | None, int | None]:
    """Return the limits given to the client in COMPARE_RPM and COMPARE_TPM: None when unset, 0 for no limit."""
    rpm = os.environ.get("COMPARE_RPM")
    tpm = os.environ.get("COMPARE_TPM")
    return (int(rpm) if rpm else None, int(tpm) if tpm else None)


def cookbook_limits() -> tuple[float, float]:
    """Return the Cookbook's limits: those given (0 is unlimited), else the script's defaults."""
    rpm, tpm = known_limits()
    if rpm is None or tpm is None:
        return COOKBOOK_DEFAULT_RPM, COOKBOOK_DEFAULT_TPM
    return (rpm or math.inf, tpm or math.inf)


async def run_embedlimit(texts: list[str], errors: list[str]) -> Vectors:
    from embedlimit import Embedder

    rpm, tpm = known_limits()
    rpm, tpm = rpm or None, tpm or None
    vectors: Vectors = {}
    async with Embedder(
        MODEL, api_key=api_key(), base_url=base_url(), requests_per_minute=rpm, tokens_per_minute=tpm
    ) as embedder:
        async for result in embedder.embed_stream(enumerate(texts)):
            if result.vector is not None:
                vectors[result.key] = result.vector
            elif len(errors) < 5:
                errors.append(str(result.reason))
    return vectors


async def run_openai_gather(texts: list[str], errors: list[str], max_retries: int | None) -> Vectors:
    """Embed with the common hand-written client: fixed batches, a semaphore, asyncio.gather."""
    import openai

    if max_retries is None:
        client = openai.AsyncOpenAI(api_key=api_key(), base_url=base_url())
    else:
        client = openai.AsyncOpenAI(api_key=api_key(), base_url=base_url(), max_retries=max_retries)
    semaphore = asyncio.Semaphore(GATHER_CONCURRENCY)
    vectors: Vectors = {}

    async def embed_batch(start: int) -> None:
        async with semaphore:
            response = await client.embeddings.create(model=MODEL, input=texts[start : start + INPUTS_PER_REQUEST])
        for entry in response.data:
            vectors[start + entry.index] = entry.embedding

    starts = range(0, len(texts), INPUTS_PER_REQUEST)
    outcomes = await asyncio.gather(*(embed_batch(start) for start in starts), return_exceptions=True)
    errors.extend(repr(outcome) for outcome in outcomes if isinstance(outcome, BaseException))
    await client.close()
    return vectors


async def run_cookbook(texts: list[str], errors: list[str]) -> Vectors:
    import aiohttp

    rpm, tpm = cookbook_limits()
    url = base_url() + "/embeddings"
    async with aiohttp.ClientSession() as session:
        processor = CookbookProcessor(
            session, url, api_key(), MODEL, rpm, tpm
        )
        await processor.run(make_jobs(texts, INPUTS_PER_REQUEST))
    return dict(processor.vectors)


async def run_langchain(texts: list[str], errors: list[str]) -> Vectors:
    from langchain_openai import OpenAIEmbeddings
    from pydantic import SecretStr

    embeddings = OpenAIEmbeddings(model=MODEL, api_key=SecretStr(api_key()), base_url=base_url())
    try:
        vectors = await embeddings.aembed_documents(texts)
    except Exception as error:  # one failed request fails the whole call, so every vector is lost
        errors.append(repr(error))
        return {}
    return dict(enumerate(vectors))


async def run_graphrag(texts: list[str], errors: list[str]) -> Vectors:
    """neo4j-graphrag's embedder is synchronous and embeds one text per call, so run it in threads."""
    from neo4j_graphrag.embeddings import OpenAIEmbeddings

    embedder = OpenAIEmbeddings(model=MODEL, api_key=api_key(), base_url=base_url())
    vectors: Vectors = {}

    def embed_one(position: int) -> None:
        try:
            vectors[position] = embedder.embed_query(texts[position])
        except Exception as error:
            if len(errors) < 5:
                errors.append(repr(error))

    with ThreadPoolExecutor(GRAPHRAG_THREADS) as pool:
        await asyncio.get_running_loop().run_in_executor(None, lambda: list(pool.map(embed_one, range(len(texts)))))
    return vectors


PEERS: dict[str, Callable[[list[str], list[str]], Coroutine[Any, Any, Vectors]]] = {
    "embedlimit": run_embedlimit,
    "openai": lambda texts, errors: run_openai_gather(texts, errors, None),
    "openai-retries8": lambda texts, errors: run_openai_gather(texts, errors, 8),
    "cookbook": run_cookbook,
    "langchain": run_langchain,
    "graphrag": run_graphrag,
}


def count_lost(texts: list[str], vectors: Vectors) -> int:
    """Count inputs with no vector or a vector that differs from the simulator's for that text."""
    lost = 0
    for position, text in enumerate(texts):
        vector = vectors.get(position)
        if vector is None or len(vector) != 1536:
            lost += 1
            continue
        if not numpy.allclose(numpy.asarray(vector, dtype=numpy.float32), expected_vector(text), atol=1e-6):
            lost += 1
    return lost


def main(peer: str, texts_path: str, output_path: str) -> None:
    texts: list[str] = json.loads(Path(texts_path).read_text())
    errors: list[str] = []
    started_at = time.time()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        vectors: Vectors = asyncio.run(PEERS[peer](texts, errors))
    except Exception:
        errors.append(traceback.format_exc(limit=3))
        vectors = {}
    finished_at = time.time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result: dict[str, Any] = {
        "peer": peer,
        "inputs": len(texts),
        "started_at": started_at,
        "finished_at": finished_at,
        "cpu_seconds": (usage.ru_utime + usage.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime),
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "errors": errors[:5],
    }
    result["lost"] = count_lost(texts, vectors)
    Path(output_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:4])
