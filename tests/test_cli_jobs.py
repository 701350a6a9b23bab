"""The Neo4j subcommands run as a user runs them: a subprocess with settings in the environment."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import neo4j
import orjson
import pytest

from embedlimit.testing import Simulator, expected_vector
from tests.conftest import Neo4jTarget

pytestmark = [pytest.mark.neo4j, pytest.mark.timeout(180)]

KEY = "sk-test-cli-7f3a9c"
MODEL = "text-embedding-3-small"
SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "debian-packages-sample.jsonl"


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(rpm=3000, tpm=1_000_000, keys=[KEY], time_scale=600.0) as sim:
        yield sim


def _environment(target: Neo4jTarget, sim: Simulator, cwd: Path) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("NEO4J_", "OPENAI_"))}
    environment.update(NEO4J_URI=target.uri, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=sim.base_url,
                       EMBEDLIMIT_TEST_CWD=str(cwd))
    if target.auth is not None:
        environment.update(NEO4J_USERNAME=target.auth[0], NEO4J_PASSWORD=target.auth[1])
    return environment


async def _embedlimit(environment: dict[str, str], *arguments: str, timeout: float = 120.0) -> tuple[int, str, str]:
    # The working folder is a temporary one, where the default dead-letter file lands.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "embedlimit", *arguments, env=environment, cwd=environment["EMBEDLIMIT_TEST_CWD"],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


BACKFILL = ("backfill", "--label", "Package", "--text-template", "{summary}\\n\\n{description}",
            "--key-property", "name", "--clock-scale", "600", "--json")


async def test_load_and_backfill_sample(
    clean_neo4j: Neo4jTarget, neo4j_driver: neo4j.AsyncDriver, simulator: Simulator, tmp_path: Path
) -> None:
    environment = _environment(clean_neo4j, simulator, tmp_path)
    code, stdout, stderr = await _embedlimit(environment, "load-debian", str(SAMPLE), "--json")
    assert code == 0, stderr
    assert orjson.loads(stdout)["packages"] == 500

    code, stdout, stderr = await _embedlimit(environment, *BACKFILL, "--create-index", "--dead-letter",
                                             str(tmp_path / "dead.jsonl"))

    assert code == 0, stderr
    summary = orjson.loads(stdout)
    assert summary["embedded"] == 500
    assert summary["failed"] == 0
    assert summary["index"] == "package_embedding_vector"
    records, _, _ = await neo4j_driver.execute_query(
        "MATCH (p:Package) RETURN p.summary + '\\n\\n' + p.description AS text, p.embedding AS embedding"
    )
    assert len(records) == 500
    for record in records[:20]:
        assert record["embedding"] == pytest.approx(expected_vector(record["text"], MODEL), abs=1e-6)
    assert KEY not in stdout + stderr


async def test_backfill_dry_run_sends_nothing(
    clean_neo4j: Neo4jTarget, neo4j_driver: neo4j.AsyncDriver, simulator: Simulator, tmp_path: Path
) -> None:
    environment = _environment(clean_neo4j, simulator, tmp_path)
    await _embedlimit(environment, "load-debian", str(SAMPLE))

    code, stdout, stderr = await _embedlimit(environment, *BACKFILL, "--dry-run", "--tpm", "1000000",
                                             "--rpm", "3000")

    assert code == 0, stderr
    summary = orjson.loads(stdout)
    assert summary["nodes"] == 500
    assert summary["tokens"] > 500 * 20
    assert summary["estimated_cost_usd"] == pytest.approx(summary["tokens"] * 0.02 / 1_000_000)
    assert summary["minimum_seconds"] == 0.0  # the sample fits in the first minute's full bucket
    assert simulator.stats().requests == 0


async def test_backfill_quota_exit_code_and_resume(
    clean_neo4j: Neo4jTarget, simulator: Simulator, tmp_path: Path
) -> None:
    environment = _environment(clean_neo4j, simulator, tmp_path)
    await _embedlimit(environment, "load-debian", str(SAMPLE))
    simulator.set_quota_exhausted(KEY, True)

    code, _, stderr = await _embedlimit(environment, *BACKFILL)

    assert code == 3
    assert "quota" in stderr.lower()
    assert "run the same command again" in stderr
    simulator.set_quota_exhausted(KEY, False)
    code, stdout, stderr = await _embedlimit(environment, *BACKFILL)
    assert code == 0, stderr
    assert orjson.loads(stdout)["embedded"] == 500


async def test_backfill_usage_errors(clean_neo4j: Neo4jTarget, simulator: Simulator, tmp_path: Path) -> None:
    environment = _environment(clean_neo4j, simulator, tmp_path)

    code, _, stderr = await _embedlimit(environment, "backfill", "--label", "Package")
    assert code == 2
    assert "--text-property" in stderr

    code, _, stderr = await _embedlimit(environment, "backfill", "--label", "Pack`age", "--text-property", "x")
    assert code == 2
    assert "invalid label 'Pack`age'" in stderr

    code, _, stderr = await _embedlimit(environment, "load-debian", "/nonexistent/packages.jsonl")
    assert code == 2
    assert "is not a file" in stderr


@pytest.mark.timeout(300)
async def test_backfill_killed_then_resumed(
    clean_neo4j: Neo4jTarget, neo4j_driver: neo4j.AsyncDriver, tmp_path: Path
) -> None:
    await neo4j_driver.execute_query(
        "UNWIND range(0, 2999) AS i CREATE (:Doc {uid: i, body: 'document ' + i + ' about topic ' + (i % 37)})"
    )
    # Slow enough (100 requests per simulated minute) that the kill lands mid-run.
    async with Simulator(rpm=600, tpm=1_000_000, keys=[KEY], time_scale=60.0) as sim:
        environment = _environment(clean_neo4j, sim, tmp_path)
        arguments = ("backfill", "--label", "Doc", "--text-property", "body", "--key-property", "uid",
                     "--batch-size", "50", "--rpm", "600", "--clock-scale", "60", "--json")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "embedlimit", *arguments, "--max-concurrency", "4", env=environment, cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        await _wait_for_vectors(neo4j_driver, at_least=300)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        done_at_kill = await _count_vectors(neo4j_driver)
        assert 300 <= done_at_kill < 3000

        code, stdout, stderr = await _embedlimit(environment, *arguments)

        assert code == 0, stderr
        assert orjson.loads(stdout)["embedded"] == 3000 - done_at_kill
        counts = sim.embed_counts()
        redone = sum(count - 1 for count in counts.values())
        # Only the requests in flight at the kill, and vectors not yet written, are redone.
        assert redone <= 4 * 2048
        assert sum(1 for count in counts.values() if count >= 1) == 3000
    records, _, _ = await neo4j_driver.execute_query(
        "MATCH (d:Doc) RETURN d.body AS body, d.embedding AS embedding ORDER BY d.uid"
    )
    assert len(records) == 3000
    for record in records[::97]:
        assert record["embedding"] == pytest.approx(expected_vector(record["body"], MODEL), abs=1e-6)


async def _count_vectors(driver: neo4j.AsyncDriver) -> int:
    records, _, _ = await driver.execute_query("MATCH (d:Doc) WHERE d.embedding IS NOT NULL RETURN count(d) AS n")
    return int(records[0]["n"])


async def _wait_for_vectors(driver: neo4j.AsyncDriver, at_least: int) -> None:
    for _ in range(600):
        if await _count_vectors(driver) >= at_least:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} vectors were written within 60 s")


async def test_backfill_unreachable_neo4j(simulator: Simulator, tmp_path: Path) -> None:
    environment = _environment(Neo4jTarget("bolt://127.0.0.1:1", None, None), simulator, tmp_path)

    code, _, stderr = await _embedlimit(environment, *BACKFILL, timeout=60)

    assert code == 1
    assert "cannot use Neo4j at bolt://127.0.0.1:1" in stderr
    assert "check NEO4J_URI" in stderr


async def test_backfill_rejected_key_message(clean_neo4j: Neo4jTarget, simulator: Simulator, tmp_path: Path) -> None:
    environment = _environment(clean_neo4j, simulator, tmp_path)
    await _embedlimit(environment, "load-debian", str(SAMPLE))
    environment["OPENAI_API_KEY"] = "sk-test-wrong-key-0000"

    code, stdout, stderr = await _embedlimit(environment, *BACKFILL)

    assert code == 3
    assert f"the API at {simulator.base_url}/embeddings rejected the key (HTTP 401)" in stderr
    assert "quota" not in stderr.lower()
    assert "sk-test-wrong-key-0000" not in stdout + stderr


async def test_backfill_unreachable_api_exit_code(
    clean_neo4j: Neo4jTarget, neo4j_driver: neo4j.AsyncDriver, simulator: Simulator, tmp_path: Path
) -> None:
    await neo4j_driver.execute_query("UNWIND range(0, 9) AS i CREATE (:Doc {uid: i, body: 'text ' + i})")
    environment = _environment(clean_neo4j, simulator, tmp_path)
    environment["OPENAI_BASE_URL"] = "http://127.0.0.1:1/v1"

    code, stdout, stderr = await _embedlimit(environment, "backfill", "--label", "Doc", "--text-property", "body",
                                             "--clock-scale", "600", "--json")

    assert code == 1
    assert orjson.loads(stdout)["failed"] == 10
    assert "no request to http://127.0.0.1:1/v1/embeddings succeeded" in stderr
    assert "embedlimit replay Doc-dead-letters.jsonl" in stderr
