"""Run the simulator ceiling benchmark in quick mode, so the script keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "simulator_ceiling.py"


@pytest.mark.timeout(120)
def test_simulator_ceiling_quick(tmp_path: Path) -> None:
    output = tmp_path / "simulator_ceiling.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(output.read_text(encoding="utf-8"))
    first_line = json.loads(completed.stdout.splitlines()[0])
    assert first_line == report
    assert report["quick"] is True
    assert [result["scenario"] for result in report["results"]] == [
        "small_requests",
        "vectors_base64",
        "vectors_float",
    ]
    for result in report["results"]:
        assert result["errors"] == 0
        assert result["vectors"] > 0
        assert result["vectors_per_second"] > 0
