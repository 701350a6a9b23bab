"""Run bench/limiter_efficiency.py --quick so the benchmark keeps working; targets are not checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "limiter_efficiency.py"


@pytest.mark.timeout(180)
def test_limiter_bench_quick_runs(tmp_path: Path) -> None:
    output = tmp_path / "limiter_efficiency.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "steady_tokens_learned" in completed.stdout

    report = json.loads(output.read_text())
    assert report["quick"] is True
    rows = {row["name"]: row for row in report["scenarios"]}
    assert set(rows) == {
        "steady_tokens_learned",
        "steady_tokens_given",
        "steady_requests_learned",
        "steady_requests_given",
        "short_job_learned",
        "insufficient_quota",
    }

    for name in ("steady_tokens_learned", "steady_tokens_given", "steady_requests_learned"):
        row = rows[name]
        assert row["binding_limit"] in {"tokens", "requests"}
        assert 0.0 < row["achieved_fraction"] < 5.0
        assert 0.0 <= row["fraction_429"] <= 1.0
        assert row["responses"] > 0

    job = rows["short_job_learned"]
    assert job["completed_requests"] == job["job_requests"]
    assert job["floor_seconds"] > 0
    assert job["ratio_to_floor"] >= 0.9

    quota = rows["insufficient_quota"]
    assert quota["stopped"] is True
    assert quota["quota_answers"] >= 1
    assert quota["requests_sent_after_quota_answer"] >= 0
