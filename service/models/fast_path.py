"""The PyTorch fast path of the transformer: SDPA backend, regional torch.compile, FP8 linears, CUDA graphs.

`apply_fast_path` applies a `[fast_path]` section (service.config.FastPathConfig) once, in place, to a loaded
transformer (its dtype is applied at load time, by `service.models.loading`). `python -m bench.gpu` measures
each option on a GPU against eager and says which to turn on; all are off by default, which is right on a
CPU. What each does:

- attention backend: the transformer's forward runs inside `torch.nn.attention.sdpa_kernel` with that
  backend first; calls it cannot serve (flash has no attention mask, so the masked text cross-attention)
  fall back to the efficient kernel, then math.
- compile: regional `torch.compile`: each transformer block is compiled and, the blocks being one class,
  they share one compiled code (diffusers' `compile_repeated_blocks`); the first call of each new shape
  pays the compile.
- fp8: the linears of the transformer blocks become `Fp8Linear`: e4m3 weights with a per-tensor scale and
  activations quantized per tensor, multiplied by `torch._scaled_mm` with fast accumulation (LTX-2's
  "fp8-scaled-mm" recipe, ltx_core/quantization/fp8_scaled_mm.py). That recipe reads calibrated activation
  scales from a pre-quantized checkpoint; a bf16 checkpoint has none, so the scale is each call's amax
  (dynamic) unless `calibrate_input_scales` measured static ones. The embedding and output projections stay
  in the model dtype, as in the recipe.
- cuda graphs: each new input shape of the forward is captured once and replayed after (inputs copied into
  the graph's buffers, outputs cloned out). Calls while STG perturbs attention or a LoRA adapter is loaded
  run eagerly: a graph would replay the modules and scales it captured.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils import _pytree as pytree

from service.config import AttentionBackend, FastPathConfig

logger = logging.getLogger(__name__)

E4M3_MAX = float(torch.finfo(torch.float8_e4m3fn).max)  # 448
# torch._scaled_mm needs both matrix dimensions of the weight divisible by 16.
_SCALED_MM_ALIGNMENT = 16
# Input shapes whose graphs are kept (e.g. a first and a second pass, each with and without CFG).
MAX_CUDA_GRAPHS = 8

SDPA_BACKENDS: dict[AttentionBackend, list[SDPBackend]] = {
    AttentionBackend.MATH: [SDPBackend.MATH],
    AttentionBackend.FLASH: [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
    AttentionBackend.EFFICIENT: [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
    AttentionBackend.CUDNN: [SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
}


def apply_fast_path(
    transformer: nn.Module, cfg: FastPathConfig, compile_options: dict[str, Any] | None = None
) -> nn.Module:
    """`transformer` with `cfg` applied in place (returned for chaining); the default config changes nothing.
    `compile_options` go to torch.compile (e.g. `backend="eager"` in CPU tests)."""
    device = next(transformer.parameters()).device
    if cfg.cuda_graphs and device.type != "cuda":
        raise ValueError(f"fast_path.cuda_graphs needs a CUDA device, but the transformer is on {device}")
    if cfg.fp8:
        swapped = swap_fp8_linears(transformer)
        logger.info("fast path: %d transformer-block linears run in FP8", swapped)
    if cfg.compile:
        compiled = compile_blocks(transformer, **(compile_options or {}))
        logger.info("fast path: %d transformer blocks compiled (one code, reused)", compiled)
    if cfg.attention_backend is not AttentionBackend.DEFAULT:
        wrap_forward(
            transformer, functools.partial(_with_sdpa_backends, SDPA_BACKENDS[cfg.attention_backend])
        )
    if cfg.cuda_graphs:
        graphs = CudaGraphForward(transformer.forward, lambda: graph_safe(transformer))
        wrap_forward(transformer, lambda _inner: graphs)
    return transformer


def wrap_forward(module: nn.Module, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace `module.forward` (what `module(...)` calls) by `wrapper(current forward)`."""
    module.forward = wrapper(module.forward)


def _with_sdpa_backends(backends: list[SDPBackend], inner: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(inner)
    def forward(*args: Any, **kwargs: Any) -> Any:
        with sdpa_kernel(backends, set_priority=True):
            return inner(*args, **kwargs)

    return forward


@contextlib.contextmanager
def only_sdpa_backend(backend: AttentionBackend) -> Iterator[None]:
    """Exactly `backend`, no fallback: for checking that a backend serves a shape (bench.gpu's rows)."""
    with sdpa_kernel(SDPA_BACKENDS[backend][:1]):
        yield


# --- regional compile ---------------------------------------------------------------------------


def compile_blocks(transformer: nn.Module, **compile_kwargs: Any) -> int:
    """torch.compile each repeated block in place (one compiled code shared by all); returns how many."""
    blocks = [m for m in transformer.modules() if type(m).__name__ in _repeated_block_names(transformer)]
    if not blocks:
        raise ValueError(f"{type(transformer).__name__} declares no repeated blocks to compile")
    for block in blocks:
        block.compile(**compile_kwargs)
    return len(blocks)


def _repeated_block_names(transformer: nn.Module) -> set[str]:
    # diffusers' models list their repeated block classes in `_repeated_blocks` (compile_repeated_blocks).
    return set(getattr(transformer, "_repeated_blocks", None) or ())


# --- FP8 ------------------------------------------------------------------------------------------


def quantize_per_tensor(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(e4m3 weight, float32 scale) with weight ~= e4m3 * scale; the scale maps the amax to 448."""
    weight32 = weight.detach().float()
    scale = (weight32.abs().amax() / E4M3_MAX).clamp(min=1e-12)
    quantized = (weight32 / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return quantized, scale


class Fp8Linear(nn.Linear):
    """An nn.Linear whose matmul runs in FP8: e4m3 weight and activations, per-tensor scales, bf16 (the
    input's dtype) out. `input_scale` None: each call's amax sets the activation scale (dynamic)."""

    weight_scale: torch.Tensor
    input_scale: torch.Tensor | None

    def __init__(self, linear: nn.Linear, input_scale: float | None = None) -> None:
        nn.Module.__init__(self)  # not nn.Linear's: it would allocate a full-precision weight
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight, weight_scale = quantize_per_tensor(linear.weight)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = linear.bias
        self.register_buffer("weight_scale", weight_scale)
        static = None if input_scale is None else torch.tensor(input_scale, device=weight.device)
        self.register_buffer("input_scale", static)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        # The scale rounded to the input's dtype both quantizes and dequantizes, so the two agree exactly.
        scale = (self.input_scale if self.input_scale is not None else _amax_scale(flat)).to(flat.dtype)
        quantized = (flat / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
        out = torch._scaled_mm(
            quantized,
            self.weight.t(),
            scale_a=scale.float(),
            scale_b=self.weight_scale,
            out_dtype=x.dtype,
            use_fast_accum=True,
        )
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)


def _amax_scale(x: torch.Tensor) -> torch.Tensor:
    return (x.detach().abs().amax().float() / E4M3_MAX).clamp(min=1e-12)


def fp8_candidates(transformer: nn.Module) -> dict[str, nn.Linear]:
    """The linears of the transformer blocks that `_scaled_mm` can take, by qualified name."""
    blocks = getattr(transformer, "transformer_blocks", None)
    if blocks is None:
        raise ValueError(f"{type(transformer).__name__} has no transformer_blocks to quantize")
    return {
        f"transformer_blocks.{name}": module
        for name, module in blocks.named_modules()
        if type(module) is nn.Linear
        and module.in_features % _SCALED_MM_ALIGNMENT == 0
        and module.out_features % _SCALED_MM_ALIGNMENT == 0
    }


def swap_fp8_linears(transformer: nn.Module, input_scales: dict[str, float] | None = None) -> int:
    """Replace the block linears by `Fp8Linear` (static activation scales where `input_scales` has one)."""
    candidates = fp8_candidates(transformer)
    for name, linear in candidates.items():
        parent_name, _, attr = name.rpartition(".")
        scale = (input_scales or {}).get(name)
        setattr(transformer.get_submodule(parent_name), attr, Fp8Linear(linear, scale))
    return len(candidates)


def calibrate_input_scales(transformer: nn.Module, run: Callable[[], Any]) -> dict[str, float]:
    """Static activation scales (amax / 448 of each block linear's input over `run()`), by linear name."""
    amax: dict[str, float] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            amax[name] = max(amax.get(name, 0.0), float(inputs[0].detach().abs().amax()))

        return hook

    handles = [m.register_forward_pre_hook(record(n)) for n, m in fp8_candidates(transformer).items()]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return {name: max(value, 1e-12) / E4M3_MAX for name, value in amax.items()}


# --- CUDA graphs ----------------------------------------------------------------------------------


def graph_safe(transformer: nn.Module) -> bool:
    """Whether a captured graph computes what the module would now: no STG processor swapped in (they
    carry per-call rows) and no LoRA adapters (per-job modules and scales)."""
    if getattr(transformer, "_hf_peft_config_loaded", False) or getattr(transformer, "peft_config", None):
        return False
    for module in transformer.modules():
        processor = getattr(module, "processor", None)
        if processor is not None and type(processor).__name__ == "PerturbedSelfAttentionProcessor":
            return False
    return True


class _Graph:
    def __init__(self, graph: torch.cuda.CUDAGraph, inputs: list[torch.Tensor], output: Any) -> None:
        self.graph, self.inputs, self.output = graph, inputs, output


class CudaGraphForward:
    """`forward` captured once per input signature (tensor shapes, dtypes, devices and the other
    arguments) and replayed; calls for which `safe()` is False run `forward` eagerly."""

    def __init__(self, forward: Callable[..., Any], safe: Callable[[], bool] = lambda: True) -> None:
        self.forward, self.safe = forward, safe
        self.graphs: OrderedDict[tuple[Any, ...], _Graph] = OrderedDict()
        self.pool = torch.cuda.graph_pool_handle()
        self.captures = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.safe():
            return self.forward(*args, **kwargs)
        leaves, spec = pytree.tree_flatten((args, kwargs))
        tensors = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
        key = (str(spec), *(_signature(leaf) for leaf in leaves))
        entry = self.graphs.get(key)
        if entry is None:
            entry = self._capture(leaves, spec)
            self.graphs[key] = entry
            if len(self.graphs) > MAX_CUDA_GRAPHS:
                self.graphs.popitem(last=False)
        else:
            self.graphs.move_to_end(key)
        for static, value in zip(entry.inputs, tensors, strict=True):
            static.copy_(value)
        entry.graph.replay()
        return pytree.tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, entry.output)

    def _capture(self, leaves: list[Any], spec: Any) -> _Graph:
        static_leaves = [leaf.clone() if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves]
        args, kwargs = pytree.tree_unflatten(static_leaves, spec)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up off the capture (lazy init, autotuning, compiles)
            for _ in range(2):
                self.forward(*args, **kwargs)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            output = self.forward(*args, **kwargs)
        self.captures += 1
        inputs = [leaf for leaf in static_leaves if isinstance(leaf, torch.Tensor)]
        return _Graph(graph, inputs, output)


def _signature(leaf: Any) -> Any:
    if isinstance(leaf, torch.Tensor):
        return (tuple(leaf.shape), leaf.dtype, leaf.device)
    return repr(leaf)
