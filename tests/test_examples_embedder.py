"""The Embedder examples: embed_file.py against its in-process simulator, and the FastAPI app."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import httpx
import orjson
import pytest

from tests.embedder_support import assert_vector_of

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.timeout(60)


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_embed_file(*arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if name != "OPENAI_BASE_URL"}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "embed_file.py"), *arguments],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
        env=environment,
    )


def test_embed_file_lines(tmp_path: Path) -> None:
    source = tmp_path / "texts.txt"
    source.write_text("first line\nsecond line\nthird line\n", encoding="utf-8")
    target = tmp_path / "vectors.jsonl"

    completed = run_embed_file(str(source), str(target))

    assert completed.returncode == 0, completed.stderr
    assert "using the simulator" in completed.stderr
    records = {record["id"]: record for record in map(orjson.loads, target.read_bytes().splitlines())}
    assert set(records) == {1, 2, 3}
    assert_vector_of(records[2]["embedding"], "second line")
    assert not (tmp_path / "vectors.jsonl.failed.jsonl").exists()


def test_embed_file_jsonl_with_failures(tmp_path: Path) -> None:
    source = tmp_path / "texts.jsonl"
    lines = [{"id": "a", "text": "alpha"}, {"id": "b", "text": "   "}, {"id": "c", "text": "gamma"}]
    source.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    target = tmp_path / "vectors.jsonl"

    completed = run_embed_file(str(source), str(target), "--dimensions", "64")

    assert completed.returncode == 1
    records = {record["id"]: record for record in map(orjson.loads, target.read_bytes().splitlines())}
    assert set(records) == {"a", "c"}
    assert_vector_of(records["c"]["embedding"], "gamma", dimensions=64)
    failures = [orjson.loads(line) for line in (tmp_path / "vectors.jsonl.failed.jsonl").read_bytes().splitlines()]
    assert [failure["id"] for failure in failures] == ["b"]
    assert "empty or only whitespace" in failures[0]["reason"]


async def test_fastapi_app_coalesces_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    example = load_example("fastapi_app")
    app = example.app
    texts = [f"web text {number}" for number in range(30)]

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            responses = await asyncio.gather(*(client.post("/embed", json={"text": text}) for text in texts))
            empty = await client.post("/embed", json={"text": ""})
            metrics = (await client.get("/metrics")).json()

    for text, response in zip(texts, responses, strict=True):
        assert response.status_code == 200
        assert response.json()["dimensions"] == 1536
        assert_vector_of(response.json()["embedding"], text)
    assert empty.status_code == 422
    assert "empty or only whitespace" in empty.json()["detail"]
    assert metrics["inputs"] == 30
    assert metrics["requests"] < 30
