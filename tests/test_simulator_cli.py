"""`embedlimit simulate`: argument handling in process, serving and stopping in a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import pytest

from embedlimit._cli import _simulator_config, build_parser, main
from tests.simulator_support import MODEL, post_embeddings

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 15.0


async def _start(arguments: Sequence[str], environment: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    code = "import sys; from embedlimit._cli import main; sys.exit(main(sys.argv[1:]))"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        "simulate",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), _START_TIMEOUT)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    return process, line.decode().strip()


async def _stop(process: asyncio.subprocess.Process, signal_number: int) -> tuple[int, str]:
    process.send_signal(signal_number)
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), _STOP_TIMEOUT)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, stderr.decode()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def _environment(**variables: str) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if name != "OPENAI_API_KEY"}
    environment.update(variables)
    return environment


@pytest.mark.timeout(60)
async def test_serves_until_sigterm(session: aiohttp.ClientSession) -> None:
    environment = _environment(OPENAI_API_KEY="sk-cli-a, sk-cli-b")
    process, base_url = await _start(["--rpm", "60", "--request-window", "0", "--time-scale", "60"], environment)
    url = f"{base_url}/embeddings"
    accepted = await post_embeddings(session, url, {"model": MODEL, "input": "a"}, key="sk-cli-b")
    rejected = await post_embeddings(session, url, {"model": MODEL, "input": "a"}, key="sk-other")
    code, stderr = await _stop(process, signal.SIGTERM)
    assert base_url.startswith("http://127.0.0.1:")
    assert base_url.endswith("/v1")
    assert accepted.status == 200
    assert accepted.headers["x-ratelimit-limit-requests"] == "60"
    assert rejected.status == 401
    assert code == 0
    assert "Stopped after 2 requests" in stderr
    assert "sk-cli" not in stderr


@pytest.mark.timeout(60)
async def test_stops_on_sigint_with_keys_file(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# test keys\nsk-file-1\n\nsk-file-2  # second\n", encoding="utf-8")
    arguments = ["--keys-file", str(keys_file), "--no-headers", "--fault-rate", "http_503=1"]
    process, base_url = await _start(arguments, _environment(OPENAI_API_KEY="sk-ignored"))
    url = f"{base_url}/embeddings"
    faulty = await post_embeddings(session, url, {"model": MODEL, "input": "a"}, key="sk-file-2")
    ignored = await post_embeddings(session, url, {"model": MODEL, "input": "a"}, key="sk-ignored")
    code, _ = await _stop(process, signal.SIGINT)
    assert faulty.status == 503
    assert "x-ratelimit-limit-requests" not in faulty.headers
    assert ignored.status == 401
    assert code == 0


def test_keys_option_not_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--keys", "sk-secret"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --keys" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--fault-rate", "http_504=0.1"], "'http_504' is not a valid FaultKind"),
        (["--fault-rate", "hang=often"], "the rate must be a number from 0 to 1"),
        (["--fault-rate", "hang"], "--fault-rate expects NAME=VALUE"),
        (["--rpm", "-1"], "rpm must be at least 1"),
    ],
)
def test_invalid_values_exit_2(arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_empty_keys_file_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# nothing here\n", encoding="utf-8")
    assert main(["simulate", "--keys-file", str(keys_file)]) == 2
    assert "contains no key" in capsys.readouterr().err


def test_options_map_to_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    arguments = [
        "simulate", "--rpm", "0", "--tpm", "5000", "--request-window", "0", "--latency-ms", "250",
        "--latency-per-token-ms", "0.5", "--latency-jitter-ms", "10", "--azure-style", "always",
        "--deployment", "embedder=text-embedding-3-large", "--no-retry-after", "--ignore-encoding-format",
        "--quota-tokens", "900", "--time-scale", "60", "--limit-scope", "key", "--no-input-counts",
    ]
    config = _simulator_config(build_parser().parse_args(arguments))
    assert config.rpm is None
    assert config.tpm == 5000
    assert config.request_window is None
    assert config.latency_base == 0.25
    assert config.latency_per_token == 0.0005
    assert config.latency_jitter == 0.01
    assert config.azure_style is True
    assert config.azure_deployments == {"embedder": "text-embedding-3-large"}
    assert config.retry_after_headers is False
    assert config.honor_encoding_format is False
    assert config.quota_tokens == 900
    assert config.time_scale == 60.0
    assert config.limit_scope == "key"
    assert config.track_inputs is False
    assert config.keys is None
    assert config.host == "127.0.0.1"
