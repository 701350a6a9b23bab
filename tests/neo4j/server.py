"""Start and stop the in-process Neo4j 5.26 test server defined by pom.xml and Launcher.java.

The first start resolves about 150 MB of jars from Maven Central (44 s on a 2-core development
machine) and caches them under target/, keyed by a hash of pom.xml and Launcher.java. Later
starts take about 10 seconds.

Run as a script to keep a server up for manual use:

    python tests/neo4j/server.py            # prints the Bolt URI, stops on Ctrl-C
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

HERE = Path(__file__).resolve().parent
TARGET = HERE / "target"
STAMP = TARGET / "build.stamp"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0


class Neo4jServerError(RuntimeError):
    """The test server could not be built or started."""


def _build_key() -> str:
    digest = hashlib.sha256()
    for name in ("pom.xml", "Launcher.java"):
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()


def find_java() -> str:
    """Return a java binary of version 17 or 21, which Neo4j 5.26 supports."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    candidates += sorted(Path("/usr/lib/jvm").glob("java-17-*/bin/java"))
    candidates += sorted(Path("/usr/lib/jvm").glob("*-17-*/bin/java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(Path(on_path))
    for java in candidates:
        if java.exists() and _java_major(java) in (17, 21):
            return str(java)
    raise Neo4jServerError(
        "no Java 17 or 21 found (Neo4j 5.26 supports only these); install openjdk-17-jdk-headless "
        "or set JAVA_HOME, or point the tests at your own server with NEO4J_URI"
    )


def _java_major(java: Path) -> int:
    result = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=False)
    first_line = (result.stderr or result.stdout).splitlines()[0] if (result.stderr or result.stdout) else ""
    version = first_line.split('"')[1] if '"' in first_line else "0"
    return int(version.split(".")[0])


def build() -> None:
    """Resolve the jars with Maven and compile the launcher, unless the cached build is current."""
    key = _build_key()
    if STAMP.exists() and STAMP.read_text() == key:
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise Neo4jServerError("Maven (mvn) is not installed; install maven, or set NEO4J_URI")
    shutil.rmtree(TARGET, ignore_errors=True)
    _run([mvn, "-B", "-q", "package"], "resolving Neo4j and APOC from Maven Central")
    javac = str(Path(find_java()).with_name("javac"))
    classes = TARGET / "classes"
    classes.mkdir(parents=True, exist_ok=True)
    _run([javac, "--release", "17", "-cp", str(TARGET / "lib" / "*"), "-d", str(classes),
          str(HERE / "Launcher.java")], "compiling Launcher.java")
    STAMP.write_text(key)


def _run(command: list[str], step: str) -> None:
    print(f"neo4j test server: {step} ...", file=sys.stderr, flush=True)
    result = subprocess.run(command, cwd=HERE, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise Neo4jServerError(f"{step} failed with exit code {result.returncode}:\n{tail}")


class Neo4jTestServer:
    """One in-process Neo4j with APOC, listening for Bolt on 127.0.0.1."""

    def __init__(self, port: int = 0, data_dir: Path | None = None, java_options: list[str] | None = None):
        self.port = port
        self.data_dir = data_dir
        self.java_options = java_options or []
        self.uri: str | None = None
        self._process: subprocess.Popen[str] | None = None
        self._workdir: str | None = None
        self._log: Path | None = None

    def start(self) -> str:
        """Start the server and return its Bolt URI once it accepts connections."""
        build()
        self._workdir = tempfile.mkdtemp(prefix="embedlimit-neo4j-")
        self._log = Path(self._workdir) / "server.log"
        classpath = os.pathsep.join(str(TARGET / part) for part in ("classes", "lib/*", "plugins/*"))
        command = [find_java(), "-Xmx1g", "-XX:+UseParallelGC", *self.java_options, "-cp", classpath,
                   "Launcher", self._workdir, str(TARGET / "plugins"), str(self.port)]
        if self.data_dir is not None:
            command.append(str(self.data_dir))
        with open(self._log, "w") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
            )
        self.uri = self._read_uri()
        self.port = int(self.uri.rsplit(":", 1)[1].strip("/"))
        return self.uri

    def _read_uri(self) -> str:
        assert self._process is not None
        assert self._process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = self._process.stdout.readline()
            if line.startswith("BOLT_URI="):
                return line.removeprefix("BOLT_URI=").strip().rstrip("/")
            if not line and self._process.poll() is not None:
                break
        self.stop()
        log_tail = self._log.read_text()[-3000:] if self._log and self._log.exists() else ""
        raise Neo4jServerError(f"Neo4j did not start within {START_TIMEOUT:.0f} s; its log ends:\n{log_tail}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period) and remove its work folder."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stdin is not None:
            process.stdin.close()
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Neo4jTestServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "build":
        build()
        return 0
    with Neo4jTestServer() as server:
        print(server.uri, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
