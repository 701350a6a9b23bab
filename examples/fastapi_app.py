"""A FastAPI app that embeds one text per HTTP request through one shared Embedder.

Concurrent requests are coalesced. The embedder waits up to `coalesce_window` (5 ms by default)
after a text arrives and sends the texts that arrived meanwhile in one embeddings request, so a
burst of web traffic costs a few API requests instead of one each.

The embedder is created in the app's lifespan and closed on shutdown. With `OPENAI_BASE_URL`
unset, it talks to an `embedlimit.testing.Simulator` started in the same process. Run it with an
ASGI server, for example `pip install uvicorn` and then

    uvicorn examples.fastapi_app:app

    curl -X POST localhost:8000/embed -H 'content-type: application/json' -d '{"text": "hello"}'
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

from embedlimit._embedder import Embedder
from embedlimit._errors import FatalError, InputError, RetryableError
from embedlimit.testing import Simulator

SIMULATOR_KEY = "sk-example-simulator"


class EmbedRequest(BaseModel):
    text: str


class EmbedResponse(BaseModel):
    embedding: list[float]
    dimensions: int


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        settings: dict[str, Any] = {}
        if not os.environ.get("OPENAI_BASE_URL"):
            simulator = await stack.enter_async_context(Simulator())
            settings = {"base_url": simulator.base_url, "api_key": SIMULATOR_KEY}
        app.state.embedder = await stack.enter_async_context(Embedder(**settings))
        yield


app = FastAPI(title="embedlimit example", lifespan=lifespan)


@app.post("/embed")
async def embed(body: EmbedRequest, request: Request) -> EmbedResponse:
    embedder: Embedder = request.app.state.embedder
    try:
        [vector] = await embedder.embed([body.text])
    except InputError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    except RetryableError as error:
        raise HTTPException(status_code=503, detail=f"embedding service busy, retry later: {error}") from None
    except FatalError as error:
        raise HTTPException(status_code=502, detail=f"embedding service unavailable: {error}") from None
    assert vector is not None
    values = vector.tolist() if hasattr(vector, "tolist") else list(vector)
    return EmbedResponse(embedding=values, dimensions=len(values))


@app.get("/metrics")
async def metrics(request: Request) -> dict[str, Any]:
    embedder: Embedder = request.app.state.embedder
    return asdict(embedder.metrics())
