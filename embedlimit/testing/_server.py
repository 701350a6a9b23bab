"""The aiohttp application that responds like OpenAI's `POST /v1/embeddings`, and its routes.

Routes:

- `POST /v1/embeddings` with `Authorization: Bearer KEY` (OpenAI);
- `POST /openai/deployments/{deployment}/embeddings?api-version=...` with an `api-key` header
  (Azure OpenAI; a Bearer token is accepted too, as Azure accepts Entra ID tokens there);
- `GET /stats` returns the counters as JSON (`?inputs=1` adds the per-text counts), and
  `POST /stats/reset` zeroes them. These two need no key.

A request goes through these steps and stops at the first that fails:

1. authentication (401);
2. body validation (400, or 404 for an unknown model);
3. the key's quota (429 `insufficient_quota`);
4. the rate limits (429 `rate_limit_exceeded`);
5. the simulated latency, then a fault if one is due, then the embeddings.

Every response after authentication carries the `x-ratelimit-*` headers, except the 502 fault,
which stands for a proxy in front of the API.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import orjson
from aiohttp import web

from embedlimit.testing._config import SimulatorConfig
from embedlimit.testing._exchange import NO_RESPONSE, Exchange
from embedlimit.testing._state import STATE_KEY, SimulatorState

__all__ = ["STATE_KEY", "SimulatorState", "create_app"]

logger = logging.getLogger(__name__)


def create_app(config: SimulatorConfig | None = None, /, **options: Any) -> web.Application:
    """Build the simulator's aiohttp application; `options` override fields of `config`.

    The state is at `app[STATE_KEY]`. Run it with `web.AppRunner`, `aiohttp.test_utils.TestServer`
    or, more simply, through `Simulator`.
    """
    if config is None:
        config = SimulatorConfig(**options)
    elif options:
        config = _replace_config(config, options)
    app = web.Application(client_max_size=config.max_body_bytes)
    app[STATE_KEY] = SimulatorState(config)
    app.router.add_post("/v1/embeddings", _handle_openai)
    app.router.add_post("/openai/deployments/{deployment}/embeddings", _handle_azure)
    app.router.add_get("/stats", _handle_stats)
    app.router.add_post("/stats/reset", _handle_stats_reset)
    app.on_shutdown.append(_on_shutdown)
    return app


def _replace_config(config: SimulatorConfig, options: dict[str, Any]) -> SimulatorConfig:
    return dataclasses.replace(config, **options)


async def _on_shutdown(app: web.Application) -> None:
    app[STATE_KEY].closing.set()


async def _handle_openai(request: web.Request) -> web.StreamResponse:
    return await _serve(request, _bearer_key(request), model_override=None, azure_path=False)


async def _handle_azure(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if "api-version" not in request.query:
        return _azure_error(404, "404", "Resource not found")
    deployment = request.match_info["deployment"]
    model = state.config.model_for_deployment(deployment)
    if model is None:
        message = (
            f"The API deployment {deployment} for this resource does not exist. If you created the "
            "deployment within the last 5 minutes, please wait a moment and try again."
        )
        return _azure_error(404, "DeploymentNotFound", message)
    key = request.headers.get("api-key") or _bearer_key(request)
    return await _serve(request, key, model_override=model, azure_path=True)


def _bearer_key(request: web.Request) -> str:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def _azure_error(status: int, code: str, message: str) -> web.Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return web.Response(body=body, status=status, content_type="application/json")


async def _handle_stats(request: web.Request) -> web.Response:
    stats = request.app[STATE_KEY].stats
    values = stats.snapshot().to_dict()
    if request.query.get("inputs") in {"1", "true"}:
        values["embed_counts"] = stats.embed_counts()
    return web.Response(body=orjson.dumps(values), content_type="application/json")


async def _handle_stats_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].stats.reset()
    return web.Response(body=b'{"reset": true}', content_type="application/json")

async def _serve(
    request: web.Request, key: str, *, model_override: str | None, azure_path: bool
) -> web.StreamResponse:
    """Serve one embeddings request, keeping the in-flight count and the status counters."""
    state = request.app[STATE_KEY]
    exchange = Exchange(request, state, key, azure_path=azure_path)
    state.stats.request_started()
    status = NO_RESPONSE
    try:
        response = await exchange.respond(model_override)
        status = NO_RESPONSE if exchange.reset else response.status
        return response
    finally:
        state.stats.request_finished(status)
        logger.debug("request %s: status %s, %.1f ms simulated", exchange.request_id, status, exchange.elapsed_ms())
