"""The settings of one simulator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from embedlimit._clock import Clock, LoopClock, ScaledClock
from embedlimit.testing._models import DEFAULT_MODELS, EmbeddingModel
from embedlimit.testing._validation import RequestRules

__all__ = ["SimulatorConfig"]


@dataclass(frozen=True)
class SimulatorConfig:
    """Every setting of a simulator; all durations are in simulated seconds.

    Limits: `rpm` and `tpm` are per-minute limits (None disables one; the defaults are OpenAI's
    2024 tier-1 limits for text-embedding-3). `request_window` is the short window over which the
    request limit is also enforced (None disables it). `limit_scope` "organization" shares one
    set of limits across all keys, as OpenAI applies them; "key" gives each key its own.

    Keys: `keys` None accepts any non-empty key; otherwise only the keys listed.
    `azure_deployments` maps an Azure deployment name to a model; a deployment named like a model
    maps to that model.

    Time: `time_scale` runs a `ScaledClock` (60 makes a simulated minute last one real second);
    `clock` injects any clock instead (at most one of the two). Latency is `latency_base` plus
    `latency_per_token` per input token plus a uniform draw from 0..`latency_jitter`, seeded.

    Compatibility: `rate_limit_headers` False sends no `x-ratelimit-*` headers (vLLM, Ollama);
    `honor_encoding_format` False always sends floats (servers that ignore `encoding_format`);
    `azure_style` True formats resets as whole seconds and 429 bodies as Azure does, None does
    so only for requests on the Azure paths.
    """

    host: str = "127.0.0.1"
    port: int = 0
    rpm: int | None = 3000
    tpm: int | None = 1_000_000
    request_window: float | None = 1.0
    count_rejected: bool = True
    limit_scope: Literal["organization", "key"] = "organization"
    organization: str = "org-sim"
    keys: Sequence[str] | None = None
    models: Mapping[str, EmbeddingModel] = field(default_factory=lambda: DEFAULT_MODELS)
    azure_deployments: Mapping[str, str] = field(default_factory=dict)
    azure_api_version: str = "2024-02-01"
    max_inputs: int = 2048
    max_input_tokens: int = 8192
    max_request_tokens: int = 300_000
    time_scale: float | None = None
    clock: Clock | None = None
    seed: int = 0
    latency_base: float = 0.0
    latency_per_token: float = 0.0
    latency_jitter: float = 0.0
    quota_tokens: int | None = None
    fault_rates: Mapping[str, float] = field(default_factory=dict)
    hang_delay: float = 600.0
    retry_after_headers: bool = True
    rate_limit_headers: bool = True
    honor_encoding_format: bool = True
    azure_style: bool | None = None
    track_inputs: bool = True
    max_body_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.keys is not None:
            object.__setattr__(self, "keys", tuple(self.keys))
        for name in ("rpm", "tpm", "quota_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or None (no limit), got {value}")
        if self.request_window is not None and not self.request_window > 0:
            raise ValueError(f"request_window must be positive seconds or None, got {self.request_window}")
        if self.clock is not None and self.time_scale is not None:
            raise ValueError("pass either clock or time_scale, not both; a ScaledClock carries its own scale")
        for name in ("latency_base", "latency_per_token", "latency_jitter", "hang_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be zero or more seconds, got {getattr(self, name)}")

    @property
    def rules(self) -> RequestRules:
        return RequestRules(self.max_inputs, self.max_input_tokens, self.max_request_tokens)

    def make_clock(self) -> Clock:
        """Return the clock to read time through: `clock`, a ScaledClock, or the loop's clock."""
        if self.clock is not None:
            return self.clock
        if self.time_scale is not None:
            return ScaledClock(self.time_scale)
        return LoopClock()

    def model_for_deployment(self, deployment: str) -> str | None:
        """Return the model name an Azure deployment serves, or None when the deployment is unknown."""
        if deployment in self.azure_deployments:
            return self.azure_deployments[deployment]
        if deployment in self.models:
            return deployment
        return None
