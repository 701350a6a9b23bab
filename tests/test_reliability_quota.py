"""Quota exhausted mid-run: the CLI stops cleanly with exit code 3 and resumes once quota is back."""

from __future__ import annotations

from pathlib import Path

import neo4j
import pytest

from embedlimit.testing import Simulator
from tests.conftest import Neo4jTarget
from tests.reliability_support import (
    KEY,
    backfill_arguments,
    check_doc_vectors,
    cli_environment,
    count_vectors,
    create_docs,
    run_cli,
)

pytestmark = [pytest.mark.neo4j, pytest.mark.timeout(120)]

NODES = 3000
OPTIONS = ("--rpm", "600", "--max-concurrency", "4", "--dimensions", "256", "--batch-size", "100")


async def test_quota_stop_then_resume(
    clean_neo4j: Neo4jTarget, neo4j_driver: neo4j.AsyncDriver, tmp_path: Path
) -> None:
    await create_docs(neo4j_driver, NODES)
    arguments = backfill_arguments(tmp_path / "dead.jsonl", *OPTIONS)
    # The run needs about 43,000 tokens in three requests, so the quota runs out after the second.
    async with Simulator(rpm=600, tpm=1_000_000, keys=[KEY], time_scale=60.0, quota_tokens=15_000) as sim:
        stopped = await run_cli(cli_environment(clean_neo4j, sim, tmp_path), *arguments)
        first_counts = sim.embed_counts()
    committed = await count_vectors(neo4j_driver)
    # A fresh simulator stands for the key once its quota is back.
    async with Simulator(rpm=600, tpm=1_000_000, keys=[KEY], time_scale=60.0) as sim:
        resumed = await run_cli(cli_environment(clean_neo4j, sim, tmp_path), *arguments)
        second_counts = sim.embed_counts()

    assert stopped.code == 3
    assert "quota" in stopped.stderr.lower()
    assert "Everything embedded so far is committed" in stopped.stderr
    assert "run the same command again to resume" in stopped.stderr
    assert stopped.summary()["stopped"] == "QuotaExceededError"
    assert 0 < committed < NODES
    assert stopped.summary()["embedded"] == committed
    # Every vector the API delivered before the stop was committed, so the resume redoes none.
    assert sum(first_counts.values()) == committed
    assert first_counts.keys().isdisjoint(second_counts.keys())
    assert resumed.code == 0, resumed.stderr[-3000:]
    assert resumed.summary()["embedded"] == NODES - committed
    check = await check_doc_vectors(neo4j_driver, dimensions=256)
    assert check.missing == []
    assert check.wrong == []
