"""Faults: server errors, resets, malformed and short responses, and hangs longer than the timeout.

The simulator injects them at random with a fixed seed into a `backfill()` run with short
timeouts and retry delays. Every node ends up with its correct vector or in the dead-letter file
with its reason, and nothing is lost.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import neo4j
import pytest

from embedlimit._backfill import BackfillReport, backfill
from embedlimit._embedder import Embedder
from embedlimit._retry import RetryPolicy
from embedlimit.testing import Simulator
from tests.reliability_support import (
    KEY,
    LABEL,
    MODEL,
    TEMPLATE,
    check_doc_vectors,
    create_docs,
    read_dead_letters,
)

pytestmark = [pytest.mark.neo4j]

# Rates per request: 5% HTTP 500/503, 2% resets, 1% malformed JSON, 1% count mismatches, 1% hangs.
FAULT_RATES = {
    "http_500": 0.025,
    "http_503": 0.025,
    "connection_reset": 0.02,
    "malformed_json": 0.01,
    "missing_vectors": 0.01,
    "hang": 0.01,
}
# Small requests so that a few thousand nodes make hundreds of requests and faults.
INPUTS_PER_REQUEST = 10


async def _run_with_faults(driver: neo4j.AsyncDriver, tmp_path: Path, nodes: int, seed: int
                           ) -> tuple[BackfillReport, dict[str, int], int]:
    await create_docs(driver, nodes)
    # A hang lasts 3 s against a read timeout of 0.3 s, so each hang ends in a timeout and a retry.
    async with Simulator(rpm=100_000, tpm=50_000_000, keys=[KEY], fault_rates=FAULT_RATES, hang_delay=3.0,
                         seed=seed) as sim:
        retry = RetryPolicy(max_attempts=8, base_delay=0.02, max_delay=0.2, rng=random.Random(seed))
        async with Embedder(MODEL, api_key=KEY, base_url=sim.base_url, dimensions=64, retry=retry,
                            read_timeout=0.3, connect_timeout=1.0, max_inputs_per_request=INPUTS_PER_REQUEST,
                            max_concurrency=16) as embedder:
            report = await backfill(driver, embedder, LABEL, None, text_template=TEMPLATE.replace("\\n", "\n"),
                                    key_property="uid", batch_size=100, dead_letter_path=tmp_path / "dead.jsonl")
        stats = sim.stats()
    return report, stats.faults_injected, stats.requests


async def _check_accounted(driver: neo4j.AsyncDriver, tmp_path: Path, report: BackfillReport, nodes: int) -> None:
    assert report.complete
    assert report.embedded + report.failed == nodes
    check = await check_doc_vectors(driver, dimensions=64)
    assert check.wrong == []
    entries = read_dead_letters(tmp_path / "dead.jsonl")
    assert len(check.missing) == len(entries)
    assert all(entry["reason"] for entry in entries)
    assert all(entry["error"] for entry in entries)


@pytest.mark.timeout(120)
async def test_faults_leave_nothing_lost(
    neo4j_driver: neo4j.AsyncDriver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    report, faults, requests = await _run_with_faults(neo4j_driver, tmp_path, 2000, seed=7)

    await _check_accounted(neo4j_driver, tmp_path, report, 2000)
    assert sum(faults.values()) >= 10
    assert faults.get("hang", 0) >= 1
    assert KEY not in caplog.text
    print(f"faults: {requests} requests, injected {faults}, embedded {report.embedded}, failed {report.failed}")


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_faults_every_kind_at_scale(
    neo4j_driver: neo4j.AsyncDriver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    report, faults, requests = await _run_with_faults(neo4j_driver, tmp_path, 20_000, seed=11)

    await _check_accounted(neo4j_driver, tmp_path, report, 20_000)
    for kind in FAULT_RATES:
        assert faults.get(kind, 0) >= 1, kind
    assert KEY not in caplog.text
    print(f"faults at scale: {requests} requests, injected {faults}, embedded {report.embedded}, "
          f"failed {report.failed}")
