"""How a request's seed becomes noise: the one place the pipelines build their `torch.Generator`s.

The seed lives in the normalized spec; `JobContext` (service/domain/job_context.py) carries no generator
because the domain imports no torch and a generator is mutable state. Noise is drawn on the CPU so that
the same seed gives the same video on every device (and in-process and in Triton alike).
"""

from __future__ import annotations

import torch

SEED_RANGE = 2**63  # a seed plus its offset (e.g. a long-video window's start) wraps here


def seeded_generator(seed: int, offset: int = 0) -> torch.Generator:
    """A CPU generator seeded `seed + offset` (mod 2**63): offset 0 is the request's own seed."""
    return torch.Generator("cpu").manual_seed((seed + offset) % SEED_RANGE)
