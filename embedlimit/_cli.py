"""The `embedlimit` command: parse arguments, call the library, print the outcome.

Secrets and connection settings come from the environment (`OPENAI_API_KEY`, `OPENAI_BASE_URL`,
`NEO4J_URI`, `NEO4J_USERNAME`, `NEO4J_PASSWORD`), never from arguments, so they stay out of shell
history and process listings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from embedlimit._cli_jobs import add_job_parsers
from embedlimit._version import __version__

if TYPE_CHECKING:
    from embedlimit.testing import SimulatorConfig


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="embedlimit",
        description="Embed texts through the OpenAI embeddings API at the full rate limit, "
        "and store the vectors in Neo4j.",
    )
    parser.add_argument("--version", action="version", version=f"embedlimit {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")

    add_job_parsers(subcommands)
    _add_simulate_parser(subcommands)
    return parser


def _add_simulate_parser(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate = subcommands.add_parser(
        "simulate",
        help="serve a local OpenAI embeddings simulator with rate limits and faults",
        description="Serve POST /v1/embeddings (and the Azure OpenAI path) on a local port with "
        "OpenAI's validation, rate limits, rate-limit headers and 429s, and deterministic vectors. "
        "Prints the base URL on the first line of standard output and serves until SIGINT or SIGTERM. "
        "Accepted keys come from OPENAI_API_KEY (comma-separated) or --keys-file; with neither, "
        "any key is accepted. Durations are in simulated time (see --time-scale).",
        allow_abbrev=False,
    )
    _add_listen_options(simulate)
    _add_limit_options(simulate)
    _add_time_options(simulate)
    _add_fault_options(simulate)
    _add_compatibility_options(simulate)
    simulate.set_defaults(handler=_run_simulate)


def _add_listen_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("listening and keys")
    group.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    group.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default: %(default)s)")
    group.add_argument(
        "--keys-file",
        type=Path,
        metavar="PATH",
        help="file with one accepted API key per line ('#' starts a comment); overrides OPENAI_API_KEY",
    )
    group.add_argument(
        "--deployment",
        action="append",
        default=[],
        metavar="NAME=MODEL",
        help="map an Azure deployment name to a model; repeatable (a deployment named like a model "
        "always maps to it)",
    )


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("rate limits and request limits")
    group.add_argument("--rpm", type=int, default=3000, help="requests per minute; 0 disables (default: %(default)s)")
    group.add_argument(
        "--tpm", type=int, default=1_000_000, help="input tokens per minute; 0 disables (default: %(default)s)"
    )
    group.add_argument(
        "--request-window",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="also allow at most ceil(rpm / 60 * SECONDS) requests in any window of SECONDS; "
        "0 disables (default: %(default)s)",
    )
    group.add_argument(
        "--limit-scope",
        choices=["organization", "key"],
        default="organization",
        help="share one set of limits across keys, or give each key its own (default: %(default)s)",
    )
    group.add_argument(
        "--quota-tokens", type=int, metavar="TOKENS", help="tokens per key after which it gets insufficient_quota"
    )
    group.add_argument(
        "--max-inputs", type=int, default=2048, metavar="COUNT", help="max inputs per request (default: %(default)s)"
    )
    group.add_argument(
        "--max-input-tokens",
        type=int,
        default=8192,
        metavar="TOKENS",
        help="max tokens per input (default: %(default)s)",
    )
    group.add_argument(
        "--max-request-tokens",
        type=int,
        default=300_000,
        metavar="TOKENS",
        help="max tokens summed over the inputs of one request (default: %(default)s)",
    )


def _add_time_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("time and latency")
    group.add_argument(
        "--time-scale",
        type=float,
        metavar="FACTOR",
        help="run simulated time FACTOR times faster than real time; 60 makes a minute last a second",
    )
    group.add_argument(
        "--latency-ms", type=float, default=0.0, metavar="MS", help="base latency per request, in simulated ms"
    )
    group.add_argument(
        "--latency-per-token-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="extra latency per input token, in simulated ms",
    )
    group.add_argument(
        "--latency-jitter-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="uniform random extra latency from 0 up to MS simulated ms, seeded by --seed",
    )


def _add_fault_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("faults")
    group.add_argument(
        "--fault-rate",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help="probability (0..1) that a request gets fault KIND; repeatable. Kinds: "
        "http_500, http_502, http_503, connection_reset, hang, malformed_json, missing_vectors, "
        "shuffled_index, nan_vector, null_vector, empty_vector",
    )
    group.add_argument(
        "--hang-seconds",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long a hang fault delays its response, in simulated seconds (default: %(default)s)",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of the fault and latency draws (default: 0)")


def _add_compatibility_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("compatibility modes")
    group.add_argument("--no-headers", action="store_true", help="send no x-ratelimit-* headers (like vLLM, Ollama)")
    group.add_argument("--no-retry-after", action="store_true", help="send no retry-after headers on 429s")
    group.add_argument(
        "--ignore-encoding-format", action="store_true", help="always send float vectors, even when base64 is requested"
    )
    group.add_argument(
        "--azure-style",
        choices=["auto", "always", "never"],
        default="auto",
        help="Azure resets in whole seconds and Azure 429 bodies: on the Azure path only, everywhere, "
        "or nowhere (default: %(default)s)",
    )
    group.add_argument(
        "--no-input-counts",
        action="store_true",
        help="do not count embeddings per text (saves about 100 bytes per distinct text in long runs)",
    )


def _run_simulate(args: argparse.Namespace) -> int:
    from embedlimit.testing._command import serve_until_stopped

    try:
        config = _simulator_config(args)
    except (ValueError, OSError) as error:
        print(f"embedlimit simulate: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve_until_stopped(config))
    except KeyboardInterrupt:
        pass
    except OSError as error:
        print(f"embedlimit simulate: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return 0


def _simulator_config(args: argparse.Namespace) -> SimulatorConfig:
    """Build the simulator settings from parsed arguments; raise ValueError naming a bad value."""
    from embedlimit.testing import SimulatorConfig

    azure_style = {"auto": None, "always": True, "never": False}[args.azure_style]
    fault_pairs = _parse_pairs(args.fault_rate, "--fault-rate")
    fault_rates = {kind: _parse_rate(kind, rate) for kind, rate in fault_pairs.items()}
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        rpm=args.rpm or None,
        tpm=args.tpm or None,
        request_window=args.request_window or None,
        limit_scope=args.limit_scope,
        keys=_read_keys(args.keys_file),
        azure_deployments=_parse_pairs(args.deployment, "--deployment"),
        max_inputs=args.max_inputs,
        max_input_tokens=args.max_input_tokens,
        max_request_tokens=args.max_request_tokens,
        time_scale=args.time_scale,
        seed=args.seed,
        latency_base=args.latency_ms / 1000.0,
        latency_per_token=args.latency_per_token_ms / 1000.0,
        latency_jitter=args.latency_jitter_ms / 1000.0,
        quota_tokens=args.quota_tokens,
        fault_rates=_checked_fault_rates(fault_rates),
        hang_delay=args.hang_seconds,
        retry_after_headers=not args.no_retry_after,
        rate_limit_headers=not args.no_headers,
        honor_encoding_format=not args.ignore_encoding_format,
        azure_style=azure_style,
        track_inputs=not args.no_input_counts,
    )


def _read_keys(keys_file: Path | None) -> list[str] | None:
    """Return the accepted keys from `keys_file` or OPENAI_API_KEY, or None to accept any key."""
    if keys_file is not None:
        lines = keys_file.read_text(encoding="utf-8").splitlines()
        keys = [line.split("#", 1)[0].strip() for line in lines]
        source = str(keys_file)
    else:
        keys = os.environ.get("OPENAI_API_KEY", "").split(",")
        source = "OPENAI_API_KEY"
    keys = [key.strip() for key in keys if key.strip()]
    if keys_file is not None and not keys:
        raise ValueError(f"{source} contains no key; put one key per line, or leave out --keys-file")
    return keys or None


def _parse_pairs(values: Sequence[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, separator, setting = value.partition("=")
        if not separator or not name.strip() or not setting.strip():
            raise ValueError(f"{option} expects NAME=VALUE, got {value!r}")
        pairs[name.strip()] = setting.strip()
    return pairs


def _parse_rate(kind: str, rate: str) -> float:
    try:
        return float(rate)
    except ValueError:
        raise ValueError(f"--fault-rate {kind}={rate}: the rate must be a number from 0 to 1") from None


def _checked_fault_rates(rates: dict[str, float]) -> dict[str, float]:
    from embedlimit.testing import Faults

    Faults(rates)  # raises ValueError for an unknown kind, a rate outside 0..1 or a total above 1
    return rates


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
