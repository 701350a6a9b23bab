"""Run the client comparison benchmark in quick mode, so the script keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "compare.py"


@pytest.mark.timeout(180)
def test_compare_quick(tmp_path: Path) -> None:
    output = tmp_path / "compare_quick.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["quick"] is True
    assert sorted(report["scenarios"]) == ["a", "b", "c", "d", "e"]
    peers_in_b = [row["peer"] for row in report["scenarios"]["b"]["rows"]]
    assert peers_in_b == ["embedlimit", "openai", "cookbook", "langchain", "graphrag"]
    for name, scenario in report["scenarios"].items():
        for row in scenario["rows"]:
            assert row["lost"] == 0, (name, row["peer"], row["notes"])
            assert row["cpu_seconds"] > 0, (name, row["peer"])
            assert row["peak_rss_mb"] > 0, (name, row["peer"])
    assert "| embedlimit |" in completed.stdout
