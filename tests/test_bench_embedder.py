"""Run the embedder CPU benchmark in quick mode, so the script keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "embedder_cpu.py"


@pytest.mark.timeout(180)
def test_embedder_cpu_quick(tmp_path: Path) -> None:
    output = tmp_path / "embedder_cpu.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=160,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    report = json.loads(output.read_text(encoding="utf-8"))
    assert json.loads(completed.stdout.splitlines()[0]) == report
    assert report["quick"] is True
    assert [result["client"] for result in report["results"]] == ["embedlimit", "openai-python"]
    for result in report["results"]:
        assert result["vectors"] == 10_240
        assert result["cpu_seconds"] > 0
        assert result["cpu_seconds_per_100k_vectors"] > 0
    assert report["cpu_ratio"] > 0
