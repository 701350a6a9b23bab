"""Secrets: the API key never appears in logs, errors, reprs, dead-letter files or CLI output.

`run_cli` in the support module checks the output of every CLI run of the suite for the key.
These tests add failing calls at DEBUG level and check the option lists of every subcommand.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import neo4j
import pytest

from embedlimit._embedder import Embedder
from embedlimit._errors import AuthenticationError
from embedlimit.testing import Simulator
from tests.conftest import Neo4jTarget
from tests.reliability_support import KEY, MODEL, backfill_arguments, cli_environment, create_docs, run_cli

pytestmark = [pytest.mark.timeout(90)]

# Options whose name contains "key" and that take a value, and why each is not a secret.
ALLOWED_KEY_OPTIONS = {
    ("simulate", "--keys-file"),  # a file path
    ("backfill", "--key-property"),  # a node property name
}
_OPTION = re.compile(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)(?:[ =](\{[^}]*\}|[A-Z][A-Z0-9_]*))?")


def _help(*arguments: str) -> str:
    result = subprocess.run([sys.executable, "-m", "embedlimit", *arguments, "--help"], capture_output=True,
                            text=True, timeout=30, check=True)
    return result.stdout


def _subcommands() -> list[str]:
    listing = _help().split("positional arguments:", 1)[1].split("options:", 1)[0]
    return re.findall(r"^ {4}([a-z][a-z-]+)", listing, flags=re.MULTILINE)


def _options_with_values(text: str) -> set[str]:
    return {match.group(1) for match in _OPTION.finditer(text) if match.group(2)}


def test_help_parser_finds_values() -> None:
    text = "  --keys-file PATH  file\n  --limit-scope {organization,key}\n  --json  flag\n"

    assert _options_with_values(text) == {"--keys-file", "--limit-scope"}


def test_no_option_takes_key() -> None:
    subcommands = _subcommands()
    assert set(subcommands) >= {"backfill", "replay", "load-debian", "simulate"}
    for subcommand in subcommands:
        options = _options_with_values(_help(subcommand))
        assert options, subcommand
        for option in options:
            if "key" in option:
                assert (subcommand, option) in ALLOWED_KEY_OPTIONS, f"{subcommand} {option}"


@pytest.mark.neo4j
async def test_debug_run_hides_key(
    clean_neo4j: Neo4jTarget, neo4j_driver: neo4j.AsyncDriver, tmp_path: Path
) -> None:
    await create_docs(neo4j_driver, 300)
    await neo4j_driver.execute_query("CREATE (:Doc {uid: 5000, title: '', body: ''})")
    dead_letter = tmp_path / "dead.jsonl"
    rates = {"http_500": 0.2, "http_503": 0.1, "connection_reset": 0.1, "malformed_json": 0.1}
    async with Simulator(keys=[KEY], time_scale=600.0, fault_rates=rates, seed=3) as sim:
        environment = cli_environment(clean_neo4j, sim, tmp_path)
        run = await run_cli(environment, *backfill_arguments(dead_letter, "--log-level", "DEBUG",
                                                             "--dimensions", "64", clock_scale=600))
        faults = sim.stats().faults_injected
        sim.set_quota_exhausted(KEY, True)
        await neo4j_driver.execute_query("MATCH (d:Doc) REMOVE d.embedding")
        stopped = await run_cli(environment, *backfill_arguments(dead_letter, "--log-level", "DEBUG",
                                                                 clock_scale=600))

    assert run.code == 0, run.stderr[-3000:]
    assert sum(faults.values()) >= 1
    assert " DEBUG " in run.stderr
    assert stopped.code == 3
    assert KEY not in dead_letter.read_text()


async def test_errors_and_reprs_hide_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # The simulator accepts only another key, so every request with KEY fails with 401.
    async with Simulator(keys=["sk-test-other-1"]) as sim:
        embedder = Embedder(MODEL, api_key=KEY, base_url=sim.base_url)
        async with embedder:
            with pytest.raises(AuthenticationError) as raised:
                await embedder.embed(["a text"])
            texts = [str(raised.value), repr(raised.value), repr(embedder), repr(embedder.settings),
                     str(embedder.metrics())]

    for text in texts:
        assert KEY not in text
    assert KEY not in caplog.text
