"""The backfill write benchmark keeps working: its quick run completes and reports sane figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Neo4jTarget

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.neo4j, pytest.mark.timeout(300)]


def test_backfill_write_quick(clean_neo4j: Neo4jTarget) -> None:
    environment = {**os.environ, "NEO4J_URI": clean_neo4j.uri}
    if clean_neo4j.auth is not None:
        environment.update(NEO4J_USERNAME=clean_neo4j.auth[0], NEO4J_PASSWORD=clean_neo4j.auth[1])
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "backfill_write.py"), "--quick"],
        capture_output=True, text=True, timeout=280, env=environment, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads((ROOT / "bench" / "results" / "backfill_write_quick.json").read_text())
    assert figures["write_rate"]["client_nodes_per_second"] > 0
    assert figures["write_rate"]["cypher_nodes_per_second"] > 0
    assert [run["embedded"] for run in figures["backfill_rss"]] == [1_000, 5_000]
