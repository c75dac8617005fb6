"""ModelGeometry: the fixed facts about a model family that pipelines, bindings and export need."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelGeometry:
    """Fixed facts about a model family that pipelines need for shapes and normalization."""

    latent_channels: int
    spatial_compression: int  # pixels per latent cell, each side (32 for LTX)
    temporal_compression: int  # frames per latent frame after the first (8 for LTX)
    patch_size: int  # transformer patch size (1 for LTX-Video)
    patch_size_t: int
    transformer_blocks: int  # the range of STG skip blocks (`Perturbation.skip_blocks`)
    text_max_length: int  # tokens per prompt (256 for LTX-Video 0.9.7)
    text_dim: int  # width of the text embeddings the transformer takes
    latents_mean: tuple[float, ...]  # per-channel VAE latent statistics, for (de)normalization
    latents_std: tuple[float, ...]
    scaling_factor: float
    decode_timestep_conditioning: bool  # the 0.9.5+ VAE decoder takes a timestep and adds noise
