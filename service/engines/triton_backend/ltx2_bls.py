"""The LTX-2.3 component Protocols bound to BLS calls on the `ltx2_*` component models: the Triton half of
"one pipeline, two bindings" for LTX-2.3 (the torch half is service/models/ltx2_bindings.py).

Tensor names, dtypes and order come from the declarations (service/contract/ltx2_components.py). Each call
sends every declared input (a TensorRT plan takes all of its graph's), the optional ones included, and
reads every declared output. The distilled LoRA's scale travels with the text encoder and transformer
calls (`distilled_lora_scale`): `DistilledScale` holds the current stage's, set by the pipeline's stage hook.
"""

from __future__ import annotations

import torch
import triton_python_backend_utils as pb_utils  # only importable inside a Triton Python-backend stub
from transformers import PreTrainedTokenizerBase

from service.contract.ltx2_components import (
    PYTHON_BACKEND_ONLY,
    Ltx2AudioDecoderDecl,
    Ltx2ComponentDecl,
    Ltx2Geometry,
    Ltx2LatentUpsamplerDecl,
    Ltx2Perturbation,
    Ltx2TextContext,
    Ltx2TextEncoderDecl,
    Ltx2TransformerDecl,
    Ltx2VaeDecoderDecl,
)
from service.contract.pipeline import DEFAULT_COMPONENT_TIMEOUT_S
from service.engines.triton_backend.bls import BlsModel, _from_triton, _to_triton
from service.models.ltx2_bindings import stg_tensors, tokenize_ltx2
from service.pipelines.ltx2.components import Ltx2Components, RopeCoords


class DistilledScale:
    """The distilled LoRA's scale for the next text encoder and transformer calls (0: off)."""

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, scale: float) -> None:
        self.value = float(scale)

    def tensor(self) -> torch.Tensor:
        return torch.tensor([self.value], dtype=torch.float32)


class Ltx2BlsModel(BlsModel):
    """One LTX-2.3 component model, called with its declared inputs; returns every output on `device`
    (each call bounded by `timeout_s`, as `BlsModel`'s)."""

    def __init__(
        self,
        component: Ltx2ComponentDecl,
        device: torch.device,
        python_backend: bool,
        timeout_s: float = DEFAULT_COMPONENT_TIMEOUT_S,
    ) -> None:
        super().__init__(component, device, timeout_s)
        # A TensorRT plan has no Python-backend-only inputs (the LoRA scale): leave them out there.
        self.inputs = tuple(
            t for t in component.inputs if python_backend or t.name not in PYTHON_BACKEND_ONLY
        )

    def __call__(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        sent = self.inputs[: len(tensors)]
        request = pb_utils.InferenceRequest(
            model_name=self.component.name,
            requested_output_names=self.component.output_names,
            inputs=[_to_triton(declared, tensor) for declared, tensor in zip(sent, tensors, strict=True)],
        )
        response = self._exec_within_timeout(request)
        if response.has_error():
            raise RuntimeError(f"{self.component.name} failed: {response.error().message()}")
        return tuple(
            _from_triton(pb_utils.get_output_tensor_by_name(response, name)).to(self.device)
            for name in self.component.output_names
        )


class BlsLtx2TextEncoder:
    def __init__(
        self, model: Ltx2BlsModel, tokenizer: PreTrainedTokenizerBase, max_length: int, scale: DistilledScale
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.scale = scale

    def encode(self, prompt: str) -> Ltx2TextContext:
        tokens = tokenize_ltx2(self.tokenizer, [prompt], self.max_length)
        video, audio, mask = self.model(tokens["input_ids"], tokens["attention_mask"], self.scale.tensor())
        return Ltx2TextContext(video, audio, mask)


class BlsLtx2Transformer:
    def __init__(self, model: Ltx2BlsModel, num_blocks: int, scale: DistilledScale) -> None:
        self.model = model
        self._num_blocks = num_blocks
        self.scale = scale

    @property
    def num_blocks(self) -> int:
        return self._num_blocks

    def velocity(
        self,
        latents: tuple[torch.Tensor, torch.Tensor],
        context: Ltx2TextContext,
        timestep: torch.Tensor,
        coords: RopeCoords,
        perturbation: Ltx2Perturbation | None = None,
        isolate_modalities: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        video, audio = latents
        # Always sent, all false without STG: a TensorRT plan takes every input of its graph.
        stg = stg_tensors(perturbation, self._num_blocks, video.shape[0])
        isolate = torch.tensor([isolate_modalities])
        velocity, audio_velocity = self.model(
            video, audio, context.video, context.audio, context.mask, timestep, *coords, *stg, isolate,
            self.scale.tensor(),
        )  # fmt: skip
        return velocity, audio_velocity


class BlsLtx2Decoder:
    """The video VAE decoder, the audio decoder or the upsampler: one tensor in, one out."""

    def __init__(self, model: Ltx2BlsModel) -> None:
        self.model = model

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model(latents)[0]

    def upsample(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model(latents)[0]


def ltx2_bls_components(
    geometry: Ltx2Geometry,
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device,
    component_names: frozenset[str],
    timeout_s: float = DEFAULT_COMPONENT_TIMEOUT_S,
    python_backend: bool = True,
) -> Ltx2Components:
    """Components whose every call is a BLS request to the `ltx2_*` model of the same name, each bounded by
    `timeout_s` (the upsampler only when the repository has it)."""
    scale = DistilledScale()

    def model(decl: type[Ltx2ComponentDecl]) -> Ltx2BlsModel:
        return Ltx2BlsModel(decl(geometry), device, python_backend, timeout_s)

    has_upsampler = Ltx2LatentUpsamplerDecl.name in component_names
    return Ltx2Components(
        geometry=geometry,
        text_encoder=BlsLtx2TextEncoder(
            model(Ltx2TextEncoderDecl), tokenizer, geometry.text_max_length, scale
        ),
        transformer=BlsLtx2Transformer(model(Ltx2TransformerDecl), geometry.transformer_blocks, scale),
        vae_decoder=BlsLtx2Decoder(model(Ltx2VaeDecoderDecl)),
        audio_decoder=BlsLtx2Decoder(model(Ltx2AudioDecoderDecl)),
        upsampler=BlsLtx2Decoder(model(Ltx2LatentUpsamplerDecl)) if has_upsampler else None,
        set_distilled_scale=scale.set,
    )
