"""An OpenAI embeddings simulator for tests, examples and benchmarks.

`Simulator` serves `POST /v1/embeddings` (and the Azure OpenAI path) on 127.0.0.1 with
OpenAI's request validation, rate limits, rate-limit headers and 429 bodies, scripted or random
faults, and deterministic vectors: `expected_vector(text)` is the vector it sends for `text`.
"""

from embedlimit.testing._config import SimulatorConfig
from embedlimit.testing._durations import format_duration
from embedlimit.testing._faults import FaultKind, Faults
from embedlimit.testing._models import DEFAULT_MODELS, EmbeddingModel
from embedlimit.testing._server import STATE_KEY, SimulatorState, create_app
from embedlimit.testing._simulator import Simulator
from embedlimit.testing._stats import SimulatorStats, input_key
from embedlimit.testing._validation import INPUT_INDEX_PATTERN
from embedlimit.testing._vectors import expected_vector

__all__ = [
    "DEFAULT_MODELS",
    "INPUT_INDEX_PATTERN",
    "STATE_KEY",
    "EmbeddingModel",
    "FaultKind",
    "Faults",
    "Simulator",
    "SimulatorConfig",
    "SimulatorState",
    "SimulatorStats",
    "create_app",
    "expected_vector",
    "format_duration",
    "input_key",
]
