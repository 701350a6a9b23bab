"""Helpers of the reliability suite: run the CLI as a user does, seed nodes, and check the vectors.

Every CLI run goes through `run_cli` or `start_cli`, which read back all of the process output
and fail the test when the fake API key appears in it, so the secrets check covers the whole suite.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import neo4j
import orjson

from embedlimit.testing import Simulator, expected_vector
from tests.conftest import Neo4jTarget

KEY = "sk-test-SECRET-4f9a2c7e"
MODEL = "text-embedding-3-small"
LABEL = "Doc"
TEMPLATE = "{title}\\n\\n{body}"


def cli_environment(target: Neo4jTarget, sim: Simulator, cwd: Path) -> dict[str, str]:
    """Return an environment with the test servers' settings and none of the user's."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("NEO4J_", "OPENAI_"))}
    environment.update(NEO4J_URI=target.uri, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=sim.base_url,
                       RELIABILITY_CWD=str(cwd))
    if target.auth is not None:
        environment.update(NEO4J_USERNAME=target.auth[0], NEO4J_PASSWORD=target.auth[1])
    return environment


def backfill_arguments(dead_letter: Path, *extra: str, clock_scale: int = 60) -> list[str]:
    """Return the arguments of a template backfill of the `Doc` nodes, paged by `uid`."""
    return ["backfill", "--label", LABEL, "--text-template", TEMPLATE, "--key-property", "uid",
            "--clock-scale", str(clock_scale), "--dead-letter", str(dead_letter), "--json", *extra]


@dataclass
class CliRun:
    """One finished CLI process: its exit code and output."""

    code: int
    stdout: str
    stderr: str

    def summary(self) -> dict[str, object]:
        """Return the JSON summary line that `--json` prints last."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        assert lines, f"no JSON summary on stdout; stderr ends:\n{self.stderr[-2000:]}"
        summary: dict[str, object] = orjson.loads(lines[-1])
        return summary


def check_no_key(*outputs: str | bytes) -> None:
    """Fail when the fake API key appears in any of the outputs."""
    for output in outputs:
        text = output.decode(errors="replace") if isinstance(output, bytes) else output
        assert KEY not in text, "the API key appeared in the output"


async def start_cli(environment: dict[str, str], *arguments: str) -> asyncio.subprocess.Process:
    """Start `embedlimit` with piped output; the working folder is the test's temporary one."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "embedlimit", *arguments, env=environment, cwd=environment["RELIABILITY_CWD"],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def finish_cli(process: asyncio.subprocess.Process, timeout: float = 120.0) -> CliRun:
    """Wait for a started process, kill it after `timeout` seconds, and check its output for the key."""
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"embedlimit did not finish within {timeout} s") from None
    check_no_key(stdout, stderr)
    assert process.returncode is not None
    return CliRun(process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))


async def run_cli(environment: dict[str, str], *arguments: str, timeout: float = 120.0) -> CliRun:
    """Run `embedlimit` to the end and return its exit code and output."""
    return await finish_cli(await start_cli(environment, *arguments), timeout)


def doc_text(title: str, body: str) -> str:
    """Return the text the template builds for one `Doc` node."""
    return f"{title}\n\n{body}"


async def create_docs(driver: neo4j.AsyncDriver, count: int, start: int = 0) -> None:
    """Create `count` `Doc` nodes with unique texts and a uniqueness constraint on `uid`."""
    await driver.execute_query("CREATE CONSTRAINT doc_uid IF NOT EXISTS FOR (d:Doc) REQUIRE d.uid IS UNIQUE")
    await driver.execute_query(
        "UNWIND range($start, $end) AS i "
        "CREATE (:Doc {uid: i, title: 'doc ' + i, body: 'text of document ' + i + ' on topic ' + (i % 41)})",
        start=start, end=start + count - 1,
    )


async def count_vectors(driver: neo4j.AsyncDriver) -> int:
    records, _, _ = await driver.execute_query(
        "MATCH (d:Doc) WHERE d.embedding IS NOT NULL RETURN count(d) AS n", routing_=neo4j.RoutingControl.READ
    )
    return int(records[0]["n"])


async def wait_for_vectors(driver: neo4j.AsyncDriver, at_least: int, timeout: float = 90.0) -> int:
    """Poll every 50 ms until `at_least` vectors are stored; return the count seen."""
    for _ in range(int(timeout / 0.05)):
        count = await count_vectors(driver)
        if count >= at_least:
            return count
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} vectors were written within {timeout} s")


@dataclass(frozen=True)
class VectorCheck:
    """What the stored `Doc` vectors look like after a run."""

    nodes: int
    missing: list[int]
    wrong: list[int]


async def check_doc_vectors(driver: neo4j.AsyncDriver, dimensions: int | None = None) -> VectorCheck:
    """Compare every `Doc` vector with the simulator's vector for the node's template text."""
    records, _, _ = await driver.execute_query(
        "MATCH (d:Doc) RETURN d.uid AS uid, d.title AS title, d.body AS body, d.embedding AS embedding "
        "ORDER BY uid", routing_=neo4j.RoutingControl.READ,
    )
    missing, wrong = [], []
    for record in records:
        if record["embedding"] is None:
            missing.append(record["uid"])
            continue
        expected = expected_vector(doc_text(record["title"], record["body"]), MODEL, dimensions)
        if not _close(record["embedding"], expected):
            wrong.append(record["uid"])
    return VectorCheck(len(records), missing, wrong)


def _close(stored: list[float], expected: list[float]) -> bool:
    # Neo4j stores float32, so the values match to about 1e-7.
    return len(stored) == len(expected) and all(abs(a - b) <= 1e-6 for a, b in zip(stored, expected, strict=True))


def read_dead_letters(path: Path) -> list[dict[str, object]]:
    """Return the entries of a dead-letter file, none when it does not exist."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
