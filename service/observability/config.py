"""The `[metrics]` section."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricsConfig:
    # HTTP port serving Prometheus' /metrics (plaintext, next to the admin gRPC port); None = not served.
    port: int | None = None
    # The window over which `ltx_accelerator_busy_ratio` is computed.
    busy_window_s: float = 60.0
