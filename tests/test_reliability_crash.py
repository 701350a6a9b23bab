"""Crash and resume: the backfill CLI is killed with SIGKILL at seeded random points, then rerun.

After the rerun every node has exactly one correct vector, the dead-letter file lists only the
nodes whose text is invalid, and the only texts embedded twice are those the killed run had
received from the API but not yet committed.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
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
    finish_cli,
    read_dead_letters,
    run_cli,
    start_cli,
    wait_for_vectors,
)

pytestmark = [pytest.mark.neo4j]

NODES = 3000
# Nodes without title and body: the template renders them as "\n\n", which is rejected as blank.
BLANK_UIDS = (NODES, NODES + 1, NODES + 2)
OPTIONS = ("--rpm", "600", "--max-concurrency", "4", "--dimensions", "256", "--batch-size", "100")


@dataclass(frozen=True)
class Trial:
    """The figures of one kill-and-resume trial."""

    seed: int
    kill_at: int
    committed_at_kill: int
    embedded_at_kill: int
    redone: int
    killed: bool


async def _seed_graph(driver: neo4j.AsyncDriver) -> None:
    await create_docs(driver, NODES)
    await driver.execute_query("UNWIND $uids AS uid CREATE (:Doc {uid: uid})", uids=list(BLANK_UIDS))


async def _settled_count(driver: neo4j.AsyncDriver) -> int:
    """Return the vector count once it stops changing for 0.5 s, waiting at most 10 s.

    A COMMIT sent just before the kill can still complete on the server after the process is gone.
    """
    count = await count_vectors(driver)
    for _ in range(20):
        await asyncio.sleep(0.5)
        latest = await count_vectors(driver)
        if latest == count:
            return count
        count = latest
    raise AssertionError("the vector count was still changing 10 s after the kill")


async def _blank_ids(driver: neo4j.AsyncDriver) -> set[str]:
    records, _, _ = await driver.execute_query("MATCH (d:Doc) WHERE d.title IS NULL RETURN elementId(d) AS id")
    return {record["id"] for record in records}


async def _kill_and_resume(target: Neo4jTarget, driver: neo4j.AsyncDriver, tmp_path: Path, seed: int) -> Trial:
    kill_at = random.Random(seed).randrange(50, NODES - 100)
    dead_letter = tmp_path / f"dead-{seed}.jsonl"
    arguments = backfill_arguments(dead_letter, *OPTIONS)
    async with Simulator(rpm=600, tpm=1_000_000, keys=[KEY], time_scale=60.0, seed=seed) as sim:
        environment = cli_environment(target, sim, tmp_path)
        process = await start_cli(environment, *arguments)
        await wait_for_vectors(driver, kill_at)
        killed = process.returncode is None
        if killed:
            process.kill()
        await finish_cli(process)
        committed = await _settled_count(driver)
        embedded_at_kill = sim.stats().inputs_embedded

        run = await run_cli(environment, *arguments)

        assert run.code == 0, run.stderr[-3000:]
        assert run.summary()["embedded"] == NODES - committed
        counts = sim.embed_counts()
    redone = sum(count - 1 for count in counts.values())
    assert len(counts) == NODES
    # A text is embedded twice only when the killed run received its vector but had not committed it.
    assert redone <= embedded_at_kill - committed
    assert read_dead_letters(dead_letter) != []
    return Trial(seed, kill_at, committed, embedded_at_kill, redone, killed)


async def _check_outcome(driver: neo4j.AsyncDriver, dead_letter: Path) -> None:
    check = await check_doc_vectors(driver, dimensions=256)
    assert check.nodes == NODES + len(BLANK_UIDS)
    assert sorted(check.missing) == list(BLANK_UIDS)
    assert check.wrong == []
    entries = read_dead_letters(dead_letter)
    assert {entry["node_id"] for entry in entries} == await _blank_ids(driver)
    assert len(entries) == len(BLANK_UIDS)
    assert all("empty" in str(entry["reason"]) or "blank" in str(entry["reason"]) for entry in entries)


async def _run_trials(target: Neo4jTarget, driver: neo4j.AsyncDriver, tmp_path: Path, seeds: range) -> list[Trial]:
    trials = []
    for seed in seeds:
        await driver.execute_query("MATCH (d:Doc) DETACH DELETE d")
        await _seed_graph(driver)
        trial = await _kill_and_resume(target, driver, tmp_path, seed)
        await _check_outcome(driver, tmp_path / f"dead-{seed}.jsonl")
        print(f"crash trial {trial}")
        trials.append(trial)
    return trials


@pytest.mark.timeout(150)
async def test_killed_backfill_resumes_exactly(
    clean_neo4j: Neo4jTarget, neo4j_driver: neo4j.AsyncDriver, tmp_path: Path
) -> None:
    trials = await _run_trials(clean_neo4j, neo4j_driver, tmp_path, range(2))

    assert any(trial.killed for trial in trials)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_killed_backfill_resumes_ten_trials(
    clean_neo4j: Neo4jTarget, neo4j_driver: neo4j.AsyncDriver, tmp_path: Path
) -> None:
    trials = await _run_trials(clean_neo4j, neo4j_driver, tmp_path, range(100, 112))

    assert sum(trial.killed for trial in trials) >= 10
    print(f"crash trials: {len(trials)}, killed {sum(t.killed for t in trials)}, "
          f"redone {sum(t.redone for t in trials)} of {sum(t.embedded_at_kill - t.committed_at_kill for t in trials)} "
          "in flight at the kills")
