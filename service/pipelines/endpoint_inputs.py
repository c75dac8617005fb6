"""What an endpoint's pipeline takes besides its spec: the prepare stage's output (service/inputs/)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from service.domain.specs import Spec
from service.pipelines.conditioning import ConditioningMedia


@dataclass(frozen=True, eq=False)
class EndpointInputs:
    """A spec and what its pipeline takes besides it."""

    spec: Spec  # the normalized spec, its prompt expanded and its AUTO size resolved
    media: tuple[ConditioningMedia, ...] = ()  # images, then videos, at the size; extend: its context
    kept_pixels: torch.Tensor | None = None  # extend: input frames that start the output, [3, K, H, W]
