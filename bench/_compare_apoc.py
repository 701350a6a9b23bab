"""APOC's `apoc.ml.openai.embedding` under `apoc.periodic.iterate`, and the Debian backfill, for `compare.py`.

One Neo4j 5.26 test server with APOC core and extended serves every APOC run. Each call sets
the simulator's URL through the per-call `endpoint` key. The JVM's `apoc.ml.openai.url` points
at a closed local port, so a call that ignored `endpoint` would fail locally instead of
reaching any outside host. APOC's client work happens inside the Neo4j JVM, so its CPU seconds
and RSS are the JVM's, which include the database's own work.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import neo4j
import numpy
import psutil  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from _compare_sim import SimulatorProcess, SimulatorSpec  # noqa: E402

from embedlimit.testing import expected_vector  # noqa: E402
from tests.neo4j.server import Neo4jTestServer  # noqa: E402

MODEL = "text-embedding-3-small"
CLOSED_LOCAL_URL = "http://127.0.0.1:9/v1"
CHECK_SAMPLE = 2_000
"""Vectors read back and compared with `expected_vector`, because reading every vector over Bolt is slow."""

USER_OPTIONS = {"batchSize": 2000, "parallel": True, "concurrency": 50}
"""The `apoc.periodic.iterate` options of the APOC run that motivated embedlimit."""
BACKOFF_CONFIG = {"enableBackOffRetries": True, "backOffRetries": 5, "exponentialBackoff": True}

DOC_ITERATE = """
CALL apoc.periodic.iterate(
  'MATCH (d:Doc) WHERE d.part = $part AND d.embedding IS NULL RETURN d',
  'WITH collect(d) AS docs
   CALL apoc.ml.openai.embedding([d IN docs | d.text], $key, $config) YIELD index, embedding
   CALL db.create.setNodeVectorProperty(docs[index], "embedding", embedding)',
  $options)
YIELD batches, failedBatches, errorMessages, batch
RETURN batches, failedBatches, errorMessages, batch
"""

PACKAGE_ITERATE = """
CALL apoc.periodic.iterate(
  'MATCH (p:Package) WHERE p.embedding IS NULL RETURN p',
  'WITH collect(p) AS packages
   CALL apoc.ml.openai.embedding(
     [p IN packages | coalesce(p.summary, "") + "\\n\\n" + coalesce(p.description, "")], $key, $config)
   YIELD index, embedding
   CALL db.create.setNodeVectorProperty(packages[index], "embedding", embedding)',
  $options)
YIELD batches, failedBatches, errorMessages, batch
RETURN batches, failedBatches, errorMessages, batch
"""


class ApocRunner:
    """A Neo4j test server and a driver, started on entry and stopped on exit."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.server = Neo4jTestServer(java_options=[f"-Dapoc.ml.openai.url={CLOSED_LOCAL_URL}"])
        self.driver: neo4j.Driver | None = None
        self.jvm: psutil.Process | None = None

    def __enter__(self) -> ApocRunner:
        uri = self.server.start()
        self.driver = neo4j.GraphDatabase.driver(uri, auth=None)
        self.jvm = psutil.Process(self.server._process.pid)  # type: ignore[union-attr]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.driver is not None:
            self.driver.close()
        self.server.stop()

    @property
    def uri(self) -> str:
        assert self.server.uri is not None
        return self.server.uri

    def versions(self) -> dict[str, str]:
        assert self.driver is not None
        records, _, _ = self.driver.execute_query(
            "CALL dbms.components() YIELD name, versions RETURN name, versions[0] AS version"
        )
        versions = {f"neo4j ({record['name']})": record["version"] for record in records}
        records, _, _ = self.driver.execute_query("RETURN apoc.version() AS version")
        versions["apoc"] = records[0]["version"]
        versions["apoc-extended"] = "5.26.0 (jar loaded by tests/neo4j/pom.xml)"
        return versions

    def clear(self) -> None:
        assert self.driver is not None
        with self.driver.session() as session:
            session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()

    def run(
        self, spec: SimulatorSpec, peer: str, parts: list[list[str]]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Embed `parts` with APOC, one `periodic.iterate` per part at once; return child-style results and stats."""
        self._load_docs(parts)
        with SimulatorProcess(spec, self.key) as simulator:
            config = self._config(simulator.base_url, backoff=peer == "apoc-backoff")
            outcomes, timing = self._iterate_parts(len(parts), config)
            stats = simulator.stats()
        lost, wrong = self._count_lost_docs([text for part in parts for text in part])
        errors = [message for outcome in outcomes for message in outcome["errorMessages"]][:3]
        result = timing | {"lost": lost, "errors": errors, "wrong_in_sample": wrong,
                           "failed_batches": sum(outcome["failedBatches"] for outcome in outcomes)}
        return [result], stats

    def _config(self, base_url: str, *, backoff: bool) -> dict[str, Any]:
        if not base_url.startswith("http://127.0.0.1:"):
            raise ValueError(f"APOC must call a local simulator, got {base_url!r}")
        config: dict[str, Any] = {"endpoint": base_url, "model": MODEL}
        return config | BACKOFF_CONFIG if backoff else config

    def _load_docs(self, parts: list[list[str]]) -> None:
        assert self.driver is not None
        self.clear()
        rows = [{"id": index, "part": number, "text": text}
                for number, part in enumerate(parts) for index, text in enumerate(part, start=number * 10**7)]
        with self.driver.session() as session:
            for start in range(0, len(rows), 5000):
                session.run("UNWIND $rows AS row CREATE (:Doc {id: row.id, part: row.part, text: row.text})",
                            rows=rows[start : start + 5000]).consume()

    def _iterate_parts(self, count: int, config: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Run one periodic.iterate per part in its own thread, and measure the JVM over the whole run."""
        assert self.driver is not None
        assert self.jvm is not None
        outcomes: list[dict[str, Any]] = []

        def iterate(part: int) -> None:
            options = USER_OPTIONS | {"params": {"key": self.key, "config": config, "part": part}}
            records, _, _ = self.driver.execute_query(DOC_ITERATE, options=options)  # type: ignore[union-attr]
            outcomes.append(dict(records[0]))

        cpu_before = sum(self.jvm.cpu_times()[:2])
        started_at = time.time()
        threads = [threading.Thread(target=iterate, args=(part,)) for part in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        timing = {"started_at": started_at, "finished_at": time.time(),
                  "cpu_seconds": sum(self.jvm.cpu_times()[:2]) - cpu_before,
                  "peak_rss_mb": self.jvm.memory_info().rss / 2**20}
        return outcomes, timing

    def _count_lost_docs(self, texts: list[str]) -> tuple[int, int]:
        """Return (docs without a vector, wrong vectors in a random sample); wrong ones count as lost too."""
        assert self.driver is not None
        records, _, _ = self.driver.execute_query("MATCH (d:Doc) WHERE d.embedding IS NULL RETURN count(d) AS missing")
        missing = records[0]["missing"]
        records, _, _ = self.driver.execute_query(
            "MATCH (d:Doc) WHERE d.embedding IS NOT NULL WITH d, rand() AS r ORDER BY r LIMIT $n "
            "RETURN d.text AS text, d.embedding AS embedding", n=CHECK_SAMPLE)
        wrong = sum(1 for record in records if not _matches(record["embedding"], record["text"]))
        return missing + wrong, wrong


def _matches(vector: list[float], text: str) -> bool:
    return len(vector) == 1536 and bool(
        numpy.allclose(numpy.asarray(vector, dtype=numpy.float32), expected_vector(text), atol=1e-6))


def package_text(summary: str | None, description: str | None) -> str:
    """Return the text both clients embed for a package: summary, blank line, description."""
    return f"{summary or ''}\n\n{description or ''}"


class BackfillComparison:
    """Scenario (f): load Debian packages once, then embed them with embedlimit's CLI and with APOC."""

    def __init__(self, apoc: ApocRunner, environment: dict[str, str], workdir: Path) -> None:
        self.apoc = apoc
        self.environment = environment | {"NEO4J_URI": apoc.uri}
        self.environment.pop("NEO4J_PASSWORD", None)
        self.workdir = workdir

    def load(self, debian_file: Path) -> float:
        """Load the packages with `embedlimit load-debian`; return the seconds it took."""
        self.apoc.clear()
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "embedlimit", "load-debian", str(debian_file), "--log-level", "WARNING"],
                       env=self.environment, check=True, capture_output=True, text=True)
        return time.monotonic() - started

    def run_embedlimit(self, spec: SimulatorSpec) -> dict[str, Any]:
        """Run `embedlimit backfill` in a child process: CPU from RUSAGE_CHILDREN, peak RSS sampled with psutil."""
        with SimulatorProcess(spec, self.apoc.key) as simulator:
            environment = self.environment | {"OPENAI_BASE_URL": simulator.base_url, "OPENAI_API_KEY": self.apoc.key}
            command = [sys.executable, "-m", "embedlimit", "backfill", "--label", "Package",
                       "--text-template", "{summary}\\n\\n{description}", "--key-property", "name",
                       "--clock-scale", "1", "--json", "--log-level", "WARNING",
                       "--dead-letter", str(self.workdir / "package-dead-letters.jsonl")]
            # The simulator is still running, so the only child reaped in this window is the backfill.
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started_at = time.time()
            process = subprocess.Popen(
                command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            sampler = RssSampler(process.pid)
            stdout, stderr = process.communicate()
            finished_at = time.time()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            stats = simulator.stats()
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return {"peer": "embedlimit-backfill", "started_at": started_at, "finished_at": finished_at,
                "cpu_seconds": cpu, "peak_rss_mb": sampler.stop(), "exit_code": process.returncode,
                "summary": _last_json_line(stdout), "errors": [stderr[-1500:]] if process.returncode else [],
                "stats": stats}

    def run_apoc(self, spec: SimulatorSpec, peer: str) -> dict[str, Any]:
        assert self.apoc.driver is not None
        assert self.apoc.jvm is not None
        with SimulatorProcess(spec, self.apoc.key) as simulator:
            config = self.apoc._config(simulator.base_url, backoff=peer == "apoc-backoff")
            options = USER_OPTIONS | {"params": {"key": self.apoc.key, "config": config}}
            cpu_before = sum(self.apoc.jvm.cpu_times()[:2])
            started_at = time.time()
            records, _, _ = self.apoc.driver.execute_query(PACKAGE_ITERATE, options=options)
            finished_at = time.time()
            stats = simulator.stats()
        outcome = dict(records[0])
        return {"peer": peer, "started_at": started_at, "finished_at": finished_at,
                "cpu_seconds": sum(self.apoc.jvm.cpu_times()[:2]) - cpu_before,
                "peak_rss_mb": self.apoc.jvm.memory_info().rss / 2**20,
                "failed_batches": outcome["failedBatches"], "errors": list(outcome["errorMessages"])[:3],
                "stats": stats}

    def count_lost(self, overlong: set[str]) -> tuple[int, int, int]:
        """Return (packages without a vector, wrong vectors in a sample, packages in all).

        A text over 8,191 tokens is left out of the sample, because embedlimit embeds it truncated.
        """
        assert self.apoc.driver is not None
        records, _, _ = self.apoc.driver.execute_query(
            "MATCH (p:Package) RETURN count(p) AS total, count(p.embedding) AS embedded")
        total, embedded = records[0]["total"], records[0]["embedded"]
        records, _, _ = self.apoc.driver.execute_query(
            "MATCH (p:Package) WHERE p.embedding IS NOT NULL WITH p, rand() AS r ORDER BY r LIMIT $n "
            "RETURN p.name AS name, p.summary AS summary, p.description AS description, p.embedding AS embedding",
            n=CHECK_SAMPLE)
        wrong = sum(1 for record in records if record["name"] not in overlong
                    and not _matches(record["embedding"], package_text(record["summary"], record["description"])))
        return total - embedded, wrong, total

    def remove_vectors(self) -> None:
        assert self.apoc.driver is not None
        with self.apoc.driver.session() as session:
            session.run(
                "MATCH (p:Package) WHERE p.embedding IS NOT NULL CALL (p) { "
                "REMOVE p.embedding, p.embedding_model, p.embedding_hash } IN TRANSACTIONS OF 5000 ROWS"
            ).consume()


class RssSampler:
    """Sample a process's RSS every 0.2 s in a thread and keep the peak; a peak shorter than 0.2 s can be missed."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stopped.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            self._stopped.wait(0.2)

    def stop(self) -> float:
        """Stop sampling and return the peak RSS in MiB."""
        self._stopped.set()
        self._thread.join()
        return self.peak / 2**20


def _last_json_line(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                parsed: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            return parsed
    return None
