"""The Neo4j subcommands of `embedlimit`: `backfill`, `replay` and `load-debian`.

Each handler reads connection settings and secrets from the environment, calls the library, prints
a summary and returns the exit code. The code is 0 when the job finished and 1 when it failed or
left items that failed after all retries. It is 2 for invalid arguments or settings, and 3 when a
fatal API error (exhausted quota, a rejected key) stopped the job after committing its work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import neo4j
import orjson

from embedlimit._backfill import BackfillReport, backfill, known_limits, minimum_seconds
from embedlimit._clock import Clock, ScaledClock
from embedlimit._debian import load_debian
from embedlimit._embedder import Embedder
from embedlimit._errors import (
    AuthenticationError,
    ConfigurationError,
    EmbedLimitError,
    FatalError,
    QuotaExceededError,
)
from embedlimit._neo4j import GraphTarget, NodeSource, TextSpec
from embedlimit._progress import ProgressDisplay
from embedlimit._replay import replay
from embedlimit._settings import resolve_price
from embedlimit._tokens import count_tokens_batch

logger = logging.getLogger("embedlimit")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3

_ENVIRONMENT_HELP = (
    "Neo4j is reached through NEO4J_URI (default bolt://127.0.0.1:7687), NEO4J_USERNAME and "
    "NEO4J_PASSWORD (leave it unset for a server without authentication) and NEO4J_DATABASE; the "
    "API through OPENAI_API_KEY (comma-separated for several keys) and OPENAI_BASE_URL."
)


def add_job_parsers(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `backfill`, `replay` and `load-debian` subcommands."""
    _add_backfill_parser(subcommands)
    _add_replay_parser(subcommands)
    load = subcommands.add_parser(
        "load-debian", help="load Debian package descriptions into Neo4j as a graph",
        description="Merge the packages of a JSON Lines file (gzip allowed) into Neo4j as "
        "(:Package)-[:DEPENDS_ON]->(:Package) and (:Package)-[:IN_SECTION]->(:Section). "
        "Loading again updates texts and keeps vectors. " + _ENVIRONMENT_HELP,
    )
    load.add_argument("file", type=Path, help="JSON Lines file of packages, such as debian-packages.jsonl.gz")
    load.add_argument("--batch-size", type=int, default=1000, metavar="ROWS",
                      help="packages per write transaction (default: %(default)s)")
    _add_common_options(load)
    load.set_defaults(handler=_run_load_debian)


def _add_backfill_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "backfill", help="embed every node of a label that lacks a vector, resumably",
        description="Stream the nodes of a label whose embedding property is missing, embed their "
        "text at the rate the API allows, and write the vectors back in batches. Run the same "
        "command again after any stop to finish the job; committed nodes are not embedded again. "
        + _ENVIRONMENT_HELP,
    )

    nodes = parser.add_argument_group("nodes and text")
    nodes.add_argument("--label", required=True, help="label of the nodes to embed")
    text = nodes.add_mutually_exclusive_group(required=True)
    text.add_argument("--text-property", metavar="PROPERTY", help="property holding the text to embed")
    text.add_argument("--text-template", metavar="TEMPLATE",
                      help="text built from several properties, such as '{summary}\\n\\n{description}'; "
                      "a missing property reads as empty (\\n in the value is a newline)")
    nodes.add_argument("--embedding-property", default="embedding", metavar="PROPERTY",
                       help="property the vector is written to (default: %(default)s)")
    nodes.add_argument("--key-property", metavar="PROPERTY",
                       help="property to page by, with a range index or uniqueness constraint; without it "
                       "pages sort by element id, which scans the label on every page")
    nodes.add_argument("--where", metavar="CYPHER", help="extra condition on n, such as \"n.section = 'web'\"")
    nodes.add_argument("--refresh-stale", action="store_true",
                       help="also re-embed nodes whose text changed since their vector was stored")
    nodes.add_argument("--no-store-hash", action="store_true",
                       help="do not store the model name and text hash beside each vector "
                       "(stored by default as <embedding-property>_model and _hash)")

    _add_model_options(parser)

    writes = parser.add_argument_group("writes and index")
    writes.add_argument("--batch-size", type=int, default=200, metavar="ROWS",
                        help="vectors per write transaction (default: %(default)s)")
    writes.add_argument("--page-size", type=int, default=1000, metavar="NODES",
                        help="nodes read per page (default: %(default)s)")
    writes.add_argument("--write-concurrency", type=int, default=2, metavar="COUNT",
                        help="write transactions in flight at once (default: %(default)s)")
    writes.add_argument("--create-index", action="store_true",
                        help="create a vector index on the embedding property when absent")
    writes.add_argument("--similarity", choices=["cosine", "euclidean"], default="cosine",
                        help="similarity function of a created index (default: %(default)s)")
    writes.add_argument("--dead-letter", type=Path, metavar="FILE",
                        help="JSON Lines file for items that cannot be embedded "
                        "(default: <label>-dead-letters.jsonl in the current folder)")

    parser.add_argument("--dry-run", action="store_true",
                        help="count nodes and tokens, print the estimated cost and minimum time, send nothing")
    _add_common_options(parser)
    parser.set_defaults(handler=_run_backfill)


def _add_replay_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "replay", help="retry the items of a dead-letter file",
        description="Read each node listed in a dead-letter file again, embed its current text and "
        "write the vector; the file keeps only the items that fail again. " + _ENVIRONMENT_HELP,
    )
    parser.add_argument("file", type=Path, help="dead-letter file written by backfill")
    _add_model_options(parser)
    parser.add_argument("--batch-size", type=int, default=200, metavar="ROWS",
                        help="vectors per write transaction (default: %(default)s)")
    _add_common_options(parser)
    parser.set_defaults(handler=_run_replay)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and rate limits")
    group.add_argument("--model", default="text-embedding-3-small",
                       help="embedding model, or the Azure deployment's model (default: %(default)s)")
    group.add_argument("--dimensions", type=int, metavar="N",
                       help="vector length for text-embedding-3 models (default: the model's full length)")
    group.add_argument("--rpm", type=int, metavar="REQUESTS",
                       help="requests per minute your key allows; learned from the response headers when unset")
    group.add_argument("--tpm", type=int, metavar="TOKENS",
                       help="tokens per minute your key allows; learned from the response headers when unset")
    group.add_argument("--max-concurrency", type=int, default=64, metavar="REQUESTS",
                       help="maximum requests in flight at once; the rate limits set the pace below it "
                       "(default: %(default)s)")
    group.add_argument("--clock-scale", type=float, metavar="FACTOR",
                       help="run the client's clock FACTOR times faster, to match a simulator started with "
                       "--time-scale FACTOR; never use it against a real API")


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", default=os.environ.get("NEO4J_DATABASE"),
                        help="Neo4j database (default: NEO4J_DATABASE, else the server's default)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level of the messages on standard error (default: %(default)s)")


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The server warns that the embedding property does not exist yet on a first run; that is expected.
    logging.getLogger("neo4j.notifications").setLevel(logging.ERROR)


class Neo4jUnreachableError(Exception):
    """The Neo4j server named by NEO4J_URI could not be reached or rejected the credentials."""


@contextlib.asynccontextmanager
async def _connected_driver() -> AsyncIterator[neo4j.AsyncDriver]:
    """Open a driver and check the connection once, so a wrong NEO4J_URI fails at once."""
    uri = os.environ.get("NEO4J_URI", "bolt://127.0.0.1:7687")
    password = os.environ.get("NEO4J_PASSWORD")
    auth = (os.environ.get("NEO4J_USERNAME", "neo4j"), password) if password else None
    async with neo4j.AsyncGraphDatabase.driver(uri, auth=auth) as driver:
        try:
            await driver.verify_connectivity()
        except (neo4j.exceptions.ServiceUnavailable, neo4j.exceptions.AuthError, ValueError) as error:
            raise Neo4jUnreachableError(
                f"cannot use Neo4j at {uri} ({type(error).__name__}: {error}); check NEO4J_URI, "
                "NEO4J_USERNAME and NEO4J_PASSWORD"
            ) from error
        yield driver


def _embedder(args: argparse.Namespace) -> Embedder:
    clock: Clock | None = ScaledClock(args.clock_scale) if args.clock_scale else None
    return Embedder(model=args.model, dimensions=args.dimensions, clock=clock, requests_per_minute=args.rpm,
                    tokens_per_minute=args.tpm, max_concurrency=args.max_concurrency, on_invalid="skip")


def _run(args: argparse.Namespace, job: Any) -> int:
    """Run one async job with logging set up, and turn its errors into an exit code and message."""
    _configure_logging(args.log_level)
    try:
        code: int = asyncio.run(job(args))
    except KeyboardInterrupt:
        print(f"embedlimit {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (ConfigurationError, ValueError) as error:
        print(f"embedlimit {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Neo4jUnreachableError as error:
        print(f"embedlimit {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (EmbedLimitError, neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, OSError) as error:
        print(f"embedlimit {args.command}: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    return code


def _run_load_debian(args: argparse.Namespace) -> int:
    return _run(args, _load_debian)


async def _load_debian(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise ConfigurationError(f"{args.file} is not a file; give the path of a packages JSON Lines file")
    async with _connected_driver() as driver:
        report = await load_debian(driver, args.file, database=args.database, batch_size=args.batch_size)
    _print_summary(args, {"packages": report.packages, "invalid_rows": report.invalid_rows},
                   f"loaded {report.packages:,} packages ({report.invalid_rows} invalid lines skipped)")
    return EXIT_OK


def _run_backfill(args: argparse.Namespace) -> int:
    return _run(args, _dry_run if args.dry_run else _backfill)


async def _backfill(args: argparse.Namespace) -> int:
    dead_letter = args.dead_letter or Path(f"{args.label}-dead-letters.jsonl")
    async with _connected_driver() as driver, _embedder(args) as embedder:
        with ProgressDisplay(embedder.metrics, lambda: known_limits(embedder)) as display:
            report = await backfill(
                driver, embedder, args.label, args.text_property, args.embedding_property,
                text_template=_unescape(args.text_template), key_property=args.key_property, where=args.where,
                database=args.database, batch_size=args.batch_size, page_size=args.page_size,
                write_concurrency=args.write_concurrency, store_hash=not args.no_store_hash,
                refresh_stale=args.refresh_stale, create_index=args.create_index, similarity=args.similarity,
                dead_letter_path=dead_letter, on_progress=display.update,
            )
    _print_summary(args, _report_fields(report), _describe(report))
    endpoint = embedder.settings.endpoint.url
    if report.stopped is not None:
        print(f"embedlimit backfill: stopped: {_stop_reason(report.stopped, endpoint)} Everything embedded so far "
              "is committed; run the same command again to resume.", file=sys.stderr)
        return EXIT_STOPPED
    failed_requests = report.failed - report.failed_inputs
    if failed_requests:
        hint = (f"no request to {endpoint} succeeded: check OPENAI_BASE_URL and OPENAI_API_KEY"
                if report.embedded == 0 else "their requests still failed after all retries")
        print(f"embedlimit backfill: {failed_requests:,} items were not embedded because {hint}. They are listed "
              f"in {dead_letter}; run `embedlimit replay {dead_letter}` once the cause is fixed.", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _stop_reason(error: FatalError, endpoint: str) -> str:
    """Return which fatal API response stopped a run, and what the user can do about it."""
    if isinstance(error, AuthenticationError):
        return (f"the API at {endpoint} rejected the key (HTTP {error.status}); check OPENAI_API_KEY "
                "(and that OPENAI_BASE_URL is the server the key belongs to).")
    if isinstance(error, QuotaExceededError):
        return (f"the API at {endpoint} reports that the quota is exhausted ({error.code}); add credit "
                "or raise the usage limit of the account or project.")
    return f"{error}."


def _unescape(template: str | None) -> str | None:
    """Turn the two-character sequences \\n and \\t typed in a shell into a newline and a tab."""
    if template is None:
        return None
    return template.replace("\\n", "\n").replace("\\t", "\t")


def _report_fields(report: BackfillReport) -> dict[str, Any]:
    return {
        "embedded": report.embedded, "failed": report.failed, "failed_inputs": report.failed_inputs,
        "selected": report.selected,
        "tokens": report.tokens, "requests": report.requests, "rate_limited": report.rate_limited,
        "estimated_cost_usd": report.estimated_cost_usd, "wall_seconds": round(report.wall_seconds, 3),
        "clock_seconds": round(report.clock_seconds, 3), "minimum_seconds": report.minimum_seconds,
        "dead_letter_path": str(report.dead_letter_path) if report.dead_letter_path else None,
        "index": report.index.name if report.index else None,
        "stopped": type(report.stopped).__name__ if report.stopped else None,
    }


def _describe(report: BackfillReport) -> str:
    cost = "unknown" if report.estimated_cost_usd is None else f"${report.estimated_cost_usd:.4f} (estimate)"
    floor = "unknown" if report.minimum_seconds is None else f"{report.minimum_seconds:.1f} s"
    selected = "?" if report.selected is None else f"{report.selected:,}"
    lines = [
        f"embedded  {report.embedded:,} of {selected} nodes",
        f"failed    {report.failed:,}" + (f" (see {report.dead_letter_path})" if report.failed else ""),
        f"tokens    {report.tokens:,} in {_count(report.requests, 'request')}, {report.rate_limited} answered 429",
        f"cost      {cost}",
        f"time      {report.wall_seconds:.1f} s ({report.clock_seconds:.1f} s of API clock time); "
        f"minimum under the rate limits: {floor}",
    ]
    if report.index is not None:
        lines.append(f"index     {report.index.name} ({report.index.dimensions} dimensions, {report.index.state})")
    return "\n".join(lines)


async def _dry_run(args: argparse.Namespace) -> int:
    text = TextSpec(property_name=args.text_property, template=_unescape(args.text_template))
    target = GraphTarget(args.label, text, args.embedding_property, key_property=args.key_property,
                         where=args.where, database=args.database)
    nodes = tokens = 0
    async with _connected_driver() as driver:
        async for page in NodeSource(driver, target, page_size=args.page_size).pages():
            texts = [node.text for node in page if isinstance(node.text, str) and node.text.strip()]
            nodes += len(page)
            tokens += sum(min(count, 8192) for count in count_tokens_batch(texts))
    requests = max(math.ceil(nodes / 2048), math.ceil(tokens / 300_000))
    price = resolve_price(args.model, None)
    cost = None if price is None else tokens / 1_000_000 * price
    floor = minimum_seconds(tokens, requests, args.tpm, args.rpm)
    fields = {"nodes": nodes, "tokens": tokens, "requests": requests, "estimated_cost_usd": cost,
              "minimum_seconds": floor}
    cost_text = "unknown for this model" if cost is None else f"${cost:.4f} (estimate)"
    floor_text = "unknown: pass --rpm and --tpm" if floor is None else f"at least {floor:.1f} s"
    _print_summary(args, fields, f"dry run: {nodes:,} nodes to embed, {tokens:,} tokens in at least "
                   f"{_count(requests, 'request')}\ncost      {cost_text}\ntime      {floor_text}")
    return EXIT_OK


def _run_replay(args: argparse.Namespace) -> int:
    return _run(args, _replay)


async def _replay(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise ConfigurationError(f"{args.file} is not a file; give the dead-letter file written by backfill")
    async with _connected_driver() as driver, _embedder(args) as embedder:
        report = await replay(driver, embedder, args.file, database=args.database, batch_size=args.batch_size)
    fields = {"embedded": report.embedded, "failed": report.failed, "missing": report.missing,
              "already_embedded": report.already_embedded,
              "stopped": type(report.stopped).__name__ if report.stopped else None}
    _print_summary(args, fields, f"replayed: {report.embedded:,} embedded, {report.failed:,} failed again "
                   f"(kept in {args.file}), {report.missing:,} nodes no longer exist, "
                   f"{report.already_embedded:,} had a vector already")
    if report.stopped is not None:
        print(f"embedlimit replay: stopped: {report.stopped}; fix the cause and run it again", file=sys.stderr)
        return EXIT_STOPPED
    return EXIT_OK


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def _print_summary(args: argparse.Namespace, fields: dict[str, Any], text: str) -> None:
    if args.json:
        sys.stdout.write(orjson.dumps(fields).decode() + "\n")
    else:
        print(text)


__all__: Sequence[str] = ["add_job_parsers"]
