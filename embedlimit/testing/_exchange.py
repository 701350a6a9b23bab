"""One embeddings request from authentication to response: the steps listed in `_server`."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import uuid
from typing import Any

import orjson
from aiohttp import web

from embedlimit.testing._faults import FaultKind
from embedlimit.testing._limits import LimitDecision, RateLimits
from embedlimit.testing._responses import (
    auth_error,
    azure_rate_limit_body,
    build_embedding_payload,
    quota_error,
    rate_limit_error,
    rate_limit_headers,
    retry_after_headers,
)
from embedlimit.testing._state import SimulatorState
from embedlimit.testing._validation import ApiError, EmbeddingRequest, parse_embedding_request
from embedlimit.testing._vectors import compute_vectors

__all__ = ["NO_RESPONSE", "Exchange"]

logger = logging.getLogger(__name__)

NO_RESPONSE = 0
"""The status under which `requests_by_status` counts a connection reset without a response."""

_SERVER_ERRORS = {
    FaultKind.HTTP_500: (500, "The server had an error while processing your request. Sorry about that!"),
    FaultKind.HTTP_503: (503, "The engine is currently overloaded, please try again later."),
}
_BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
_BODY_FAULTS = {
    FaultKind.MALFORMED_JSON,
    FaultKind.MISSING_VECTORS,
    FaultKind.SHUFFLED_INDEX,
    FaultKind.NAN_VECTOR,
    FaultKind.NULL_VECTOR,
    FaultKind.EMPTY_VECTOR,
}


class Exchange:
    """One request and the response being built for it."""

    def __init__(self, request: web.Request, state: SimulatorState, key: str, *, azure_path: bool) -> None:
        self.request = request
        self.state = state
        self.key = key
        config = state.config
        self.azure_style = config.azure_style if config.azure_style is not None else azure_path
        self.request_id = f"req_{uuid.uuid4().hex}"
        self.started_at = state.clock.now()
        self.reset = False
        self.limit_headers: dict[str, str] = {}

    def elapsed_ms(self) -> float:
        return max(0.0, self.state.clock.now() - self.started_at) * 1000.0

    async def respond(self, model_override: str | None) -> web.StreamResponse:
        """Run the steps listed in the `_server` module docstring and return the response."""
        state = self.state
        if not self.key or not state.known_key(self.key):
            return self.error(auth_error(missing=not self.key))

        limits = state.limits_for(self.key)
        try:
            parsed = parse_embedding_request(
                await self.request.read(), state.config.models, state.config.rules, model_override=model_override
            )
        except ApiError as error:
            limits.record_failed_request(state.clock.now())
            self.limit_headers = self._headers_for(limits)
            return self.error(error)

        if state.quota.is_exhausted(self.key):
            state.stats.rate_limited("insufficient_quota")
            limits.record_failed_request(state.clock.now())
            self.limit_headers = self._headers_for(limits)
            return self.error(quota_error())

        decision = limits.admit(parsed.total_tokens, state.clock.now())
        self.limit_headers = self._snapshot_headers(decision)
        if not decision.accepted:
            return self.rate_limited(decision, parsed)
        return await self.embed(parsed)

    async def embed(self, parsed: EmbeddingRequest) -> web.StreamResponse:
        """Charge the quota, wait the latency, apply a fault if one is due, send the vectors."""
        state = self.state
        state.quota.record(self.key, parsed.total_tokens)
        state.stats.tokens_charged(parsed.total_tokens)
        await _sleep_unless_closing(state, state.latency(parsed.total_tokens))

        fault = state.faults.next_fault()
        if fault is not None:
            state.stats.fault_injected(fault.value)
            logger.debug("request %s: injecting fault %s", self.request_id, fault.value)
            early = await self.apply_transport_fault(fault)
            if early is not None:
                return early
        return self.vectors_response(parsed, fault)

    async def apply_transport_fault(self, fault: FaultKind) -> web.StreamResponse | None:
        """Send a 5xx or reset the connection, or wait out a HANG; return None when the body is still due."""
        if fault in _SERVER_ERRORS:
            status, message = _SERVER_ERRORS[fault]
            return self.error(ApiError(status, message, error_type="server_error"))
        if fault is FaultKind.HTTP_502:
            return web.Response(text=_BAD_GATEWAY_HTML, status=502, content_type="text/html")
        if fault is FaultKind.CONNECTION_RESET:
            self.reset = True
            _reset_connection(self.request)
            return web.Response(status=500)
        if fault is FaultKind.HANG:
            await _sleep_unless_closing(self.state, self.state.faults.hang_delay)
        return None

    def vectors_response(self, parsed: EmbeddingRequest, fault: FaultKind | None) -> web.Response:
        config = self.state.config
        vectors = compute_vectors(parsed.texts, parsed.model.dimension, parsed.dimensions)
        use_base64 = parsed.encoding_format == "base64" and config.honor_encoding_format
        body_fault = fault if fault in _BODY_FAULTS else None
        payload = build_embedding_payload(
            parsed, vectors, base64=use_base64, fault=body_fault, faults=self.state.faults
        )
        self.state.stats.inputs_delivered(parsed.texts[index] for index in payload.delivered)
        headers = self.common_headers() | {"openai-model": parsed.model.name}
        return web.Response(body=payload.body, status=200, content_type="application/json", headers=headers)

    def rate_limited(self, decision: LimitDecision, parsed: EmbeddingRequest) -> web.Response:
        assert decision.limit_type is not None
        self.state.stats.rate_limited(decision.limit_type)
        extra = {}
        if self.state.config.retry_after_headers and not decision.too_large:
            extra = retry_after_headers(decision.delay)
        if self.azure_style:
            body = azure_rate_limit_body(decision, self._api_version())
            return self.json_response(429, body, extra)
        error = rate_limit_error(decision, parsed.model.name, self.state.config.organization)
        return self.error(error, extra)

    def error(self, error: ApiError, extra_headers: dict[str, str] | None = None) -> web.Response:
        return self.json_response(error.status, error.body(), extra_headers)

    def json_response(self, status: int, body: Any, extra_headers: dict[str, str] | None = None) -> web.Response:
        headers = self.common_headers() | (extra_headers or {})
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)

    def common_headers(self) -> dict[str, str]:
        headers = {
            "x-request-id": self.request_id,
            "openai-processing-ms": str(round(self.elapsed_ms())),
            "openai-organization": self.state.config.organization,
            "openai-version": "2020-10-01",
        }
        return headers | self.limit_headers

    def _snapshot_headers(self, decision: LimitDecision) -> dict[str, str]:
        if not self.state.config.rate_limit_headers:
            return {}
        return rate_limit_headers(decision.snapshot, azure_style=self.azure_style)

    def _headers_for(self, limits: RateLimits) -> dict[str, str]:
        if not self.state.config.rate_limit_headers:
            return {}
        return rate_limit_headers(limits.snapshot(self.state.clock.now()), azure_style=self.azure_style)

    def _api_version(self) -> str:
        return self.request.query.get("api-version", self.state.config.azure_api_version)


async def _sleep_unless_closing(state: SimulatorState, delay: float) -> None:
    """Sleep `delay` seconds on the simulator's clock, but wake up when the server shuts down."""
    if delay <= 0:
        return
    sleeper = asyncio.ensure_future(state.clock.sleep(delay))
    closer = asyncio.ensure_future(state.closing.wait())
    try:
        await asyncio.wait({sleeper, closer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, closer):
            task.cancel()
        await asyncio.gather(sleeper, closer, return_exceptions=True)


def _reset_connection(request: web.Request) -> None:
    """Close the connection with a TCP reset (SO_LINGER 0) instead of a response."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
