"""The `embedlimit` command: parse arguments, call the library, print the outcome.

Secrets and connection settings come from the environment (`OPENAI_API_KEY`, `OPENAI_BASE_URL`,
`NEO4J_URI`, `NEO4J_USERNAME`, `NEO4J_PASSWORD`), never from arguments, so they stay out of shell
history and process listings.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from embedlimit._version import __version__


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="embedlimit",
        description="Embed texts through the OpenAI embeddings API at the full rate limit, "
        "and store the vectors in Neo4j.",
    )
    parser.add_argument("--version", action="version", version=f"embedlimit {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")

    backfill = subcommands.add_parser(
        "backfill",
        help="embed every node of a label that lacks a vector (not built yet)",
        description="Not built yet. It will stream the nodes of a label that lack a vector, "
        "embed their text at the rate the API allows, and write the vectors back in batches.",
    )
    backfill.set_defaults(handler=_run_not_built)
    return parser


def _run_not_built(args: argparse.Namespace) -> int:
    print(f"embedlimit {args.command}: not built yet in {__version__}.", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
