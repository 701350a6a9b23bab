"""`backfill()` end to end: the simulator embeds, a real Neo4j stores, and reruns resume."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import neo4j
import orjson
import pytest

from embedlimit._backfill import BackfillProgress, backfill, minimum_seconds
from embedlimit._embedder import Embedder
from embedlimit._errors import ConfigurationError, QuotaExceededError
from embedlimit._replay import replay
from embedlimit.testing import Simulator, expected_vector

pytestmark = [pytest.mark.neo4j, pytest.mark.timeout(120)]

KEY = "sk-test-backfill-0001"
MODEL = "text-embedding-3-small"


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(rpm=3000, tpm=1_000_000, keys=[KEY], time_scale=600.0) as sim:
        yield sim


def _embedder(sim: Simulator, **options: object) -> Embedder:
    return Embedder(MODEL, api_key=KEY, base_url=sim.base_url, clock=sim.clock, **options)  # type: ignore[arg-type]


async def _create_docs(driver: neo4j.AsyncDriver, count: int) -> None:
    await driver.execute_query(
        "UNWIND range(0, $count - 1) AS i CREATE (:Doc {uid: i, body: 'document number ' + i})", count=count
    )


async def _vectors(driver: neo4j.AsyncDriver) -> dict[str, list[float]]:
    records, _, _ = await driver.execute_query(
        "MATCH (d:Doc) WHERE d.embedding IS NOT NULL RETURN d.body AS body, d.embedding AS embedding"
    )
    return {record["body"]: record["embedding"] for record in records}


async def test_backfill_embeds_every_node(neo4j_driver: neo4j.AsyncDriver, simulator: Simulator) -> None:
    await _create_docs(neo4j_driver, 300)
    seen: list[int] = []

    async with _embedder(simulator) as embedder:
        report = await backfill(neo4j_driver, embedder, "Doc", "body", key_property="uid", batch_size=64,
                                page_size=100, create_index=True,
                                on_progress=lambda progress: seen.append(progress.embedded))

    assert report.complete
    assert report.embedded == 300
    assert report.selected == 300
    assert report.failed == 0
    assert seen[-1] == 300
    assert report.index is not None
    assert report.index.dimensions == 1536
    vectors = await _vectors(neo4j_driver)
    assert len(vectors) == 300
    for body in ("document number 0", "document number 299"):
        assert vectors[body] == pytest.approx(expected_vector(body, MODEL), abs=1e-6)
    assert all(count == 1 for count in simulator.embed_counts().values())


async def test_backfill_rerun_embeds_nothing(neo4j_driver: neo4j.AsyncDriver, simulator: Simulator) -> None:
    await _create_docs(neo4j_driver, 50)
    async with _embedder(simulator) as embedder:
        await backfill(neo4j_driver, embedder, "Doc", "body")
    requests_before = simulator.stats().requests

    async with _embedder(simulator) as embedder:
        report = await backfill(neo4j_driver, embedder, "Doc", "body")

    assert report.embedded == 0
    assert report.selected == 0
    assert simulator.stats().requests == requests_before


async def test_backfill_dead_letters_bad_text(
    neo4j_driver: neo4j.AsyncDriver, simulator: Simulator, tmp_path: Path
) -> None:
    await _create_docs(neo4j_driver, 20)
    await neo4j_driver.execute_query("MATCH (d:Doc) WHERE d.uid IN [3, 7] SET d.body = '   '")
    await neo4j_driver.execute_query("MATCH (d:Doc {uid: 9}) SET d.body = 42")
    dead_letter_path = tmp_path / "dead.jsonl"

    async with _embedder(simulator, on_invalid="skip") as embedder:
        report = await backfill(neo4j_driver, embedder, "Doc", "body", key_property="uid",
                                dead_letter_path=dead_letter_path)

    assert report.embedded == 17
    assert report.failed == 3
    lines = [orjson.loads(line) for line in dead_letter_path.read_bytes().splitlines()]
    assert sorted(line["key"] for line in lines) == [3, 7, 9]
    assert all(line["reason"] for line in lines)
    assert all(line["node_id"] for line in lines)


async def test_backfill_template_and_stale_refresh(neo4j_driver: neo4j.AsyncDriver, simulator: Simulator) -> None:
    await neo4j_driver.execute_query(
        "UNWIND range(0, 9) AS i CREATE (:Doc {uid: i, title: 'T' + i, body: 'body ' + i})"
    )
    template = "{title}\n\n{body}"
    async with _embedder(simulator) as embedder:
        await backfill(neo4j_driver, embedder, "Doc", text_template=template, key_property="uid")
    await neo4j_driver.execute_query("MATCH (d:Doc {uid: 4}) SET d.body = 'changed'")

    async with _embedder(simulator) as embedder:
        report = await backfill(neo4j_driver, embedder, "Doc", text_template=template, key_property="uid",
                                refresh_stale=True)

    assert report.embedded == 1
    records, _, _ = await neo4j_driver.execute_query(
        "MATCH (d:Doc {uid: 4}) RETURN d.embedding AS embedding, d.embedding_model AS model"
    )
    assert records[0]["embedding"] == pytest.approx(expected_vector("T4\n\nchanged", MODEL), abs=1e-6)
    assert records[0]["model"] == MODEL


async def test_backfill_stops_on_quota_with_progress_kept(
    neo4j_driver: neo4j.AsyncDriver, simulator: Simulator
) -> None:
    await _create_docs(neo4j_driver, 200)
    simulator.set_quota_exhausted(KEY, True)

    async with _embedder(simulator) as embedder:
        report = await backfill(neo4j_driver, embedder, "Doc", "body", key_property="uid")

    assert isinstance(report.stopped, QuotaExceededError)
    assert not report.complete
    assert report.embedded == 0
    simulator.set_quota_exhausted(KEY, False)
    async with _embedder(simulator) as embedder:
        report = await backfill(neo4j_driver, embedder, "Doc", "body", key_property="uid")
    assert report.complete
    assert report.embedded == 200


async def test_backfill_index_dimension_mismatch(neo4j_driver: neo4j.AsyncDriver, simulator: Simulator) -> None:
    await _create_docs(neo4j_driver, 5)
    await neo4j_driver.execute_query(
        "CREATE VECTOR INDEX doc_small FOR (d:Doc) ON d.embedding "
        "OPTIONS {indexConfig: {`vector.dimensions`: 256, `vector.similarity_function`: 'cosine'}}"
    )
    async with _embedder(simulator) as embedder:
        with pytest.raises(ConfigurationError, match="has 256 dimensions but the model returns 1536"):
            await backfill(neo4j_driver, embedder, "Doc", "body", create_index=True)


def test_minimum_seconds_binding_limit() -> None:
    assert minimum_seconds(3_000_000, 100, 1_000_000, 3000) == 120.0
    assert minimum_seconds(500_000, 6050, 1_000_000, 3000) == 120.0
    assert minimum_seconds(500_000, 10, 1_000_000, 3000) == 0.0
    assert minimum_seconds(1000, 10, None, None) is None
    assert BackfillProgress().elapsed >= 0


async def test_replay_embeds_fixed_texts(
    neo4j_driver: neo4j.AsyncDriver, simulator: Simulator, tmp_path: Path
) -> None:
    await _create_docs(neo4j_driver, 10)
    await neo4j_driver.execute_query("MATCH (d:Doc) WHERE d.uid IN [2, 5, 8] SET d.body = ''")
    dead_letter_path = tmp_path / "dead.jsonl"
    async with _embedder(simulator, on_invalid="skip") as embedder:
        await backfill(neo4j_driver, embedder, "Doc", "body", key_property="uid", dead_letter_path=dead_letter_path)
    await neo4j_driver.execute_query("MATCH (d:Doc) WHERE d.uid IN [2, 5] SET d.body = 'fixed ' + d.uid")
    await neo4j_driver.execute_query("MATCH (d:Doc {uid: 8}) DELETE d")

    async with _embedder(simulator, on_invalid="skip") as embedder:
        report = await replay(neo4j_driver, embedder, dead_letter_path)

    assert report.embedded == 2
    assert report.missing == 1
    assert report.failed == 0
    assert dead_letter_path.read_bytes() == b""
    vectors = await _vectors(neo4j_driver)
    assert vectors["fixed 2"] == pytest.approx(expected_vector("fixed 2", MODEL), abs=1e-6)


async def test_replay_keeps_items_failing_again(
    neo4j_driver: neo4j.AsyncDriver, simulator: Simulator, tmp_path: Path
) -> None:
    await _create_docs(neo4j_driver, 4)
    await neo4j_driver.execute_query("MATCH (d:Doc {uid: 1}) SET d.body = ' '")
    dead_letter_path = tmp_path / "dead.jsonl"
    async with _embedder(simulator, on_invalid="skip") as embedder:
        await backfill(neo4j_driver, embedder, "Doc", "body", dead_letter_path=dead_letter_path)

    async with _embedder(simulator, on_invalid="skip") as embedder:
        report = await replay(neo4j_driver, embedder, dead_letter_path)

    assert report.embedded == 0
    assert report.failed == 1
    lines = [orjson.loads(line) for line in dead_letter_path.read_bytes().splitlines()]
    assert len(lines) == 1
    assert lines[0]["attempts"] == 2
    assert lines[0]["label"] == "Doc"


async def test_replay_drops_nodes_embedded_since(
    neo4j_driver: neo4j.AsyncDriver, simulator: Simulator, tmp_path: Path
) -> None:
    await _create_docs(neo4j_driver, 3)
    await neo4j_driver.execute_query("MATCH (d:Doc {uid: 1}) SET d.body = ''")
    dead_letter_path = tmp_path / "dead.jsonl"
    async with _embedder(simulator, on_invalid="skip") as embedder:
        await backfill(neo4j_driver, embedder, "Doc", "body", dead_letter_path=dead_letter_path)
    await neo4j_driver.execute_query("MATCH (d:Doc {uid: 1}) SET d.body = 'fixed', d.embedding = [1.0, 0.0]")
    requests_before = simulator.stats().requests

    async with _embedder(simulator) as embedder:
        report = await replay(neo4j_driver, embedder, dead_letter_path)

    assert report.already_embedded == 1
    assert report.embedded == 0
    assert report.failed == 0
    assert simulator.stats().requests == requests_before
    assert dead_letter_path.read_bytes() == b""


async def test_backfill_warns_about_typos(
    neo4j_driver: neo4j.AsyncDriver, simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    await _create_docs(neo4j_driver, 3)

    async with _embedder(simulator, on_invalid="skip") as embedder:
        with caplog.at_level(logging.WARNING, logger="embedlimit._backfill"):
            await backfill(neo4j_driver, embedder, "Docs", "body")
            await backfill(neo4j_driver, embedder, "Doc", text_template="{titel}: {body}", dead_letter_path=None)

    messages = [record.getMessage() for record in caplog.records]
    assert "no node has the label 'Docs'; check --label (labels are case-sensitive)" in messages
    assert "no :Doc node has the property 'titel'; check its spelling" in messages
    assert not any("'body'" in message for message in messages)
