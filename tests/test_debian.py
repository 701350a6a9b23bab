"""Loading Debian packages into a real Neo4j: the graph's shape, idempotence and bad lines."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import neo4j
import pytest

from embedlimit._debian import load_debian, read_packages

pytestmark = [pytest.mark.neo4j, pytest.mark.timeout(120)]

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "debian-packages-sample.jsonl"

PACKAGES = [
    {"name": "app", "section": "utils", "summary": "An app", "description": "Does things.",
     "depends": ["libfoo", "libmissing"]},
    {"name": "libfoo", "section": "libs", "summary": "Foo library", "description": "Foo.", "depends": []},
    {"name": "zh-app", "section": "utils", "summary": "An app", "description": "English text.",
     "summary_zh": "应用", "description_zh": "中文描述。", "depends": ["app"]},
]


def _write_jsonl(path: Path, rows: list[object], compress: bool = False) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


async def _count(driver: neo4j.AsyncDriver, query: str) -> int:
    records, _, _ = await driver.execute_query(query)
    return int(records[0][0])


async def test_load_creates_graph(neo4j_driver: neo4j.AsyncDriver, tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "packages.jsonl.gz", list(PACKAGES), compress=True)

    report = await load_debian(neo4j_driver, path)

    assert report.packages == 3
    assert report.invalid_rows == 0
    assert await _count(neo4j_driver, "MATCH (p:Package) RETURN count(p)") == 3
    assert await _count(neo4j_driver, "MATCH (s:Section) RETURN count(s)") == 2
    assert await _count(neo4j_driver, "MATCH (:Package)-[r:DEPENDS_ON]->(:Package) RETURN count(r)") == 2
    assert await _count(neo4j_driver, "MATCH (:Package)-[r:IN_SECTION]->(:Section) RETURN count(r)") == 3
    records, _, _ = await neo4j_driver.execute_query(
        "MATCH (p:Package {name: 'zh-app'}) RETURN p.description_zh AS zh, p.summary AS summary"
    )
    assert records[0]["zh"] == "中文描述。"
    assert records[0]["summary"] == "An app"


async def test_load_twice_is_idempotent(neo4j_driver: neo4j.AsyncDriver, tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "packages.jsonl", list(PACKAGES))
    await load_debian(neo4j_driver, path)
    await neo4j_driver.execute_query("MATCH (p:Package {name: 'app'}) SET p.embedding = [1.0, 0.0]")

    await load_debian(neo4j_driver, path, batch_size=1)

    assert await _count(neo4j_driver, "MATCH (p:Package) RETURN count(p)") == 3
    assert await _count(neo4j_driver, "MATCH ()-[r]->() RETURN count(r)") == 5
    assert await _count(neo4j_driver, "MATCH (p:Package) WHERE p.embedding IS NOT NULL RETURN count(p)") == 1


async def test_load_skips_invalid_lines(neo4j_driver: neo4j.AsyncDriver, tmp_path: Path) -> None:
    path = tmp_path / "packages.jsonl"
    path.write_text('{"name": "ok", "description": "fine"}\nnot json\n[1, 2]\n{"name": ""}\n\n', "utf-8")

    report = await load_debian(neo4j_driver, path)

    assert report.packages == 1
    assert report.invalid_rows == 3


async def test_load_rejects_zero_batch_size(neo4j_driver: neo4j.AsyncDriver, tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "packages.jsonl", list(PACKAGES))
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        await load_debian(neo4j_driver, path, batch_size=0)


def test_sample_file_shape() -> None:
    packages = list(read_packages(SAMPLE))
    assert len(packages) == 500
    assert all(package["description"] for package in packages)
    assert sum(1 for package in packages if package.get("description_zh")) > 100
