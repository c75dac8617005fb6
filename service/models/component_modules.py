"""The torch module behind each declared component (service/contract/components.py).

`component_module` is what ONNX export traces and what the CPU Triton repository's component models run:
the component's adapter (torch_components.py) inside `DeclaredIO`, so inputs and outputs have the declared
dtypes whatever the model's own dtype. The in-process engine runs the same adapters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from service.contract.components import ComponentDecl
from service.contract.tensors import TensorDecl, TensorType
from service.models import torch_components as tc
from service.models.loading import LoadedModels

_TORCH_DTYPES = {TensorType.FP32: torch.float32, TensorType.INT64: torch.int64, TensorType.BOOL: torch.bool}


def torch_dtype_of(tensor_type: TensorType) -> torch.dtype:
    return _TORCH_DTYPES[tensor_type]


def default_input(component: ComponentDecl, name: str, present: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The declared default of the optional input `name`, shaped after the inputs `present`."""
    declared = component.input(name)
    shape = component.default_shape(name, {key: tuple(value.shape) for key, value in present.items()})
    return torch.full(shape, declared.default, dtype=torch_dtype_of(declared.dtype))  # type: ignore[arg-type]


class DeclaredIO(nn.Module):
    """Casts float inputs to the model's dtype (fp32 for `keeps_fp32` ones) and the output to fp32.

    So a bf16 model exports a bf16 graph (what TensorRT's strongly typed networks build from) whose inputs
    and outputs stay the declared fp32, the same casts the torch bindings make in process.
    """

    def __init__(self, adapter: nn.Module, inputs: tuple[TensorDecl, ...]) -> None:
        super().__init__()
        self.adapter = adapter
        self.model_dtype = next(adapter.parameters()).dtype
        self.cast_to_model = [tensor.dtype is TensorType.FP32 and not tensor.keeps_fp32 for tensor in inputs]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        cast = [
            x.to(self.model_dtype) if to_model else x
            for x, to_model in zip(inputs, self.cast_to_model, strict=False)
        ]
        return self.adapter(*cast).float()


def _upsampler(models: LoadedModels) -> nn.Module:
    if models.upsampler is None:
        raise ValueError("latent_upsampler: the model has no latent upsampler (model.upsampler_dir)")
    return tc.LatentUpsamplerAdapter(models.upsampler)


# Component name -> its adapter around the loaded models (one entry per declaration in the contract).
ADAPTERS: dict[str, Callable[[LoadedModels], nn.Module]] = {
    "text_encoder": lambda models: tc.TextEncoderAdapter(models.text_encoder),
    "transformer": lambda models: tc.TransformerAdapter(models.transformer),
    "vae_decoder": lambda models: tc.VaeDecoderAdapter(models.vae),
    "vae_encoder": lambda models: tc.VaeEncoderAdapter(models.vae),
    "latent_upsampler": _upsampler,
}


def component_adapter(component: ComponentDecl, models: LoadedModels) -> nn.Module:
    """The adapter of `component` around `models`, in eval mode."""
    return ADAPTERS[component.name](models).eval()


def component_module(component: ComponentDecl, models: LoadedModels) -> nn.Module:
    """What is exported and served: the adapter with the declared fp32 I/O around a model of any dtype."""
    return DeclaredIO(component_adapter(component, models), component.inputs)
