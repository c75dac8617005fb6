"""The pipeline's component Protocols bound to torch modules in this process: the in-process half of
"one pipeline, two bindings" (the Triton half is triton_backend/bls.py).

Here models meet pipelines: service/models holds the torch bindings, service/pipelines the Protocols they
implement, and neither imports the other.
"""

from __future__ import annotations

from service.config import ModelConfig
from service.models import torch_components as tc
from service.models.loading import LoadedModels, load_models, model_geometry
from service.pipelines.components import Components


def bind_components(models: LoadedModels) -> Components:
    """Torch bindings of the component Protocols around `models`."""
    geometry = model_geometry(models)
    return Components(
        geometry=geometry,
        text_encoder=tc.TorchTextEncoder(models.tokenizer, models.text_encoder, geometry.text_max_length),
        transformer=tc.TorchTransformer(models.transformer),
        vae_decoder=tc.TorchVaeDecoder(models.vae),
        vae_encoder=tc.TorchVaeEncoder(models.vae),
        upsampler=tc.TorchLatentUpsampler(models.upsampler) if models.upsampler is not None else None,
        scheduler_config=dict(models.scheduler_config),
    )


def load_components(cfg: ModelConfig) -> Components:
    """The components of `cfg`'s models (loaded once per process and config)."""
    return bind_components(load_models(cfg))
