"""The component Protocols bound to BLS calls on Triton's component models: the Triton half of
"one pipeline, two bindings" (the torch half is service/models/torch_components.py).

Tensor names and dtypes come from the component declarations (service/contract/components.py), the same ones the
component models' config.pbtxt, ONNX graphs and TensorRT profiles are generated from. Tensors cross as
numpy on the CPU and as DLPack on a GPU, so TensorRT outputs stay on the device.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch
import triton_python_backend_utils as pb_utils  # only importable inside a Triton Python-backend stub
from transformers import PreTrainedTokenizerBase

from service.contract.components import (
    ComponentDecl,
    LatentUpsamplerDecl,
    Perturbation,
    TextEncoderDecl,
    TransformerDecl,
    VaeDecoderDecl,
    VaeEncoderDecl,
)
from service.contract.pipeline import COMPONENT_TIMEOUT_MESSAGE, DEFAULT_COMPONENT_TIMEOUT_S
from service.contract.tensors import TensorDecl
from service.domain.errors import RunnerUnavailable
from service.models.assets import PipelineAssets
from service.models.component_modules import torch_dtype_of
from service.models.torch_components import tokenize
from service.pipelines.components import Components


class BlsModel:
    """One component model, called with its declared inputs; returns its one output on `device`. A call
    that takes longer than `timeout_s` fails the request as runner_unavailable (the hung call is left
    to its daemon thread: Triton offers no way to abort a model's execute)."""

    def __init__(
        self, component: ComponentDecl, device: torch.device, timeout_s: float = DEFAULT_COMPONENT_TIMEOUT_S
    ) -> None:
        self.component = component
        self.device = device
        self.timeout_s = timeout_s

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        declared = self.component.inputs
        if len(tensors) != len(declared):
            raise TypeError(f"{self.component.name} takes {len(declared)} tensors, got {len(tensors)}")
        request = pb_utils.InferenceRequest(
            model_name=self.component.name,
            requested_output_names=self.component.output_names,
            inputs=[
                _to_triton(tensor_decl, tensor) for tensor_decl, tensor in zip(declared, tensors, strict=True)
            ],
        )
        response = self._exec_within_timeout(request)
        if response.has_error():
            raise RuntimeError(f"{self.component.name} failed: {response.error().message()}")
        output = pb_utils.get_output_tensor_by_name(response, self.component.output_names[0])
        return _from_triton(output).to(self.device)

    def _exec_within_timeout(self, request: Any) -> Any:
        answer: list[Any] = []
        caller = threading.Thread(
            target=lambda: answer.append(request.exec()), name=f"bls-{self.component.name}", daemon=True
        )
        caller.start()
        caller.join(self.timeout_s)
        if not answer:
            raise RunnerUnavailable(
                f"Triton's {self.component.name} model {COMPONENT_TIMEOUT_MESSAGE} {self.timeout_s:g} s"
                " (hung or overloaded); the service is not taking jobs until it answers again"
            )
        return answer[0]


def _to_triton(declared: TensorDecl, tensor: torch.Tensor) -> pb_utils.Tensor:
    tensor = tensor.detach().to(torch_dtype_of(declared.dtype)).contiguous()
    if tensor.is_cuda:
        return pb_utils.Tensor.from_dlpack(declared.name, torch.utils.dlpack.to_dlpack(tensor))
    return pb_utils.Tensor(declared.name, tensor.numpy())


def _from_triton(tensor: pb_utils.Tensor) -> torch.Tensor:
    if tensor.is_cpu():
        # A copy: the buffer is the response's shared memory, released with the response.
        return torch.from_numpy(tensor.as_numpy().copy())
    return torch.utils.dlpack.from_dlpack(tensor.to_dlpack())


class BlsTextEncoder:
    """Tokenizes here (the tokenizer is small) and runs the encoder model on the token ids."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int, model: BlsModel) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.model = model

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = tokenize(self.tokenizer, prompts, self.max_length)
        text_embeds = self.model(tokens["input_ids"], tokens["attention_mask"])
        return text_embeds, tokens["attention_mask"].to(text_embeds.device)


class BlsTransformer:
    """Binds `Transformer` and `PerturbableTransformer`: STG travels as the model's two mask inputs."""

    def __init__(self, model: BlsModel, num_blocks: int) -> None:
        self.model = model
        self._num_blocks = num_blocks

    @property
    def num_blocks(self) -> int:
        return self._num_blocks

    def velocity(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        video_coords: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        perturbation: Perturbation | None = None,
    ) -> torch.Tensor:
        # Always sent, all false without STG: a TensorRT plan takes every input of its graph. The masks
        # stay on the CPU (a few bytes, sent as numpy; Triton places them where the model runs).
        skip_blocks = torch.zeros(self._num_blocks, dtype=torch.bool)
        rows = torch.zeros(hidden_states.shape[0], dtype=torch.bool)
        if perturbation is not None:
            skip_blocks[list(perturbation.skip_blocks)] = True
            rows = perturbation.rows.to("cpu", torch.bool)
        return self.model(
            hidden_states,
            timestep,
            video_coords,
            encoder_hidden_states,
            encoder_attention_mask,
            skip_blocks,
            rows,
        )


class BlsVaeDecoder:
    def __init__(self, model: BlsModel) -> None:
        self.model = model

    def decode(self, latents: torch.Tensor, decode_timestep: torch.Tensor) -> torch.Tensor:
        return self.model(latents, decode_timestep)


class BlsVaeEncoder:
    def __init__(self, model: BlsModel) -> None:
        self.model = model

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return self.model(video)


class BlsLatentUpsampler:
    def __init__(self, model: BlsModel) -> None:
        self.model = model

    def upsample(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model(latents)


def bls_components(
    assets: PipelineAssets,
    device: torch.device,
    component_names: frozenset[str],
    timeout_s: float = DEFAULT_COMPONENT_TIMEOUT_S,
) -> Components:
    """Components whose every call is a BLS request to the component model of the same name, each
    bounded by `timeout_s`; the optional ones (VAE encoder, latent upsampler) only when the repository
    has their models (`component_names`)."""
    geometry = assets.geometry

    def model(component_type: type[ComponentDecl]) -> BlsModel:
        return BlsModel(component_type(geometry), device, timeout_s)

    def present(component_type: type[ComponentDecl]) -> bool:
        return component_type.name in component_names

    return Components(
        geometry=geometry,
        text_encoder=BlsTextEncoder(assets.tokenizer, geometry.text_max_length, model(TextEncoderDecl)),
        transformer=BlsTransformer(model(TransformerDecl), geometry.transformer_blocks),
        vae_decoder=BlsVaeDecoder(model(VaeDecoderDecl)),
        vae_encoder=BlsVaeEncoder(model(VaeEncoderDecl)) if present(VaeEncoderDecl) else None,
        upsampler=(BlsLatentUpsampler(model(LatentUpsamplerDecl)) if present(LatentUpsamplerDecl) else None),
        scheduler_config=assets.scheduler_config,
    )
