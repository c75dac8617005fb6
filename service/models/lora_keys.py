"""LoRA key formats and scaling: any LTX-Video LoRA file -> peft weights for diffusers' transformer.

LoRAs for LTX-Video come in several layouts, all of which this accepts:
- diffusers / peft: `transformer.<module>.lora_A.weight`, `.lora_B.weight` (scale = the file's metadata,
  else alpha = rank);
- ComfyUI / original: the same under `diffusion_model.` (diffusers' `lora_state_dict` already strips it),
  with original module names (`patchify_proj`, `adaln_single`) and often a `<module>.alpha` tensor;
- kohya / musubi-tuner: `lora_down.weight` / `lora_up.weight` with `<module>.alpha`, either under a
  prefix or as one flattened name (`lora_unet_transformer_blocks_0_attn1_to_q`).

The kohya convention is W' = W + (alpha / rank) * up @ down, rank = down's first dimension. peft's adapter
config carries one alpha per module only through patterns that diffusers builds for UNets, so instead the
factor alpha / rank is folded into lora_B here and the adapter loaded with alpha = rank (scale 1): the
same product, exactly. Every module a file names is targeted (attention, feed-forward, projections);
a key that is not a LoRA weight, or names a module the transformer does not have, fails with its name.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import torch

# Prefixes a LoRA's module names may carry, longest first (after diffusers has read the file).
_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "transformer.", "base_model.model.")
_FLAT_PREFIXES = ("lora_unet_", "lora_transformer_")  # kohya: the module path with `.` -> `_`
# Original LTX-Video module names that diffusers' transformer renames (its single-file converter's map).
_ORIGINAL_MODULE_NAMES = {"patchify_proj": "proj_in", "adaln_single": "time_embed"}
_WEIGHT = re.compile(r"^(?P<module>.+?)\.(?P<kind>lora_A|lora_B|lora_down|lora_up)(?:\.default)?\.weight$")
_ALPHA = re.compile(r"^(?P<module>.+?)\.alpha$")
_DOWN = {"lora_A": "A", "lora_down": "A", "lora_B": "B", "lora_up": "B"}


class LoraKeyError(ValueError):
    """A key that cannot be placed on the transformer; the message names it."""


@dataclass
class _ModuleWeights:
    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    alpha: float | None = None
    keys: list[str] = field(default_factory=list)


def to_peft_weights(
    state_dict: Mapping[str, torch.Tensor], module_names: Collection[str], prefix: str = "transformer"
) -> tuple[dict[str, torch.Tensor], bool]:
    """`state_dict` in any layout above -> (`{prefix}.<module>.lora_A/B.weight` with alpha/rank folded into
    B, whether the file carried alphas). Raises LoraKeyError naming the first unplaceable key."""
    modules = _group_by_module(state_dict, set(module_names))
    weights: dict[str, torch.Tensor] = {}
    for module, parts in sorted(modules.items()):
        if parts.down is None or parts.up is None:
            missing = "lora_B/lora_up" if parts.up is None else "lora_A/lora_down"
            raise LoraKeyError(f"{parts.keys[0]!r}: its module has no {missing} weight")
        rank = parts.down.shape[0]
        if parts.up.shape[-1] != rank:
            raise LoraKeyError(
                f"{parts.keys[0]!r}: lora_A has rank {rank} but lora_B expects {parts.up.shape[-1]}"
            )
        up = parts.up if parts.alpha is None else parts.up * (parts.alpha / rank)
        weights[f"{prefix}.{module}.lora_A.weight"] = parts.down.contiguous()
        weights[f"{prefix}.{module}.lora_B.weight"] = up.contiguous()
    has_alphas = any(parts.alpha is not None for parts in modules.values())
    return weights, has_alphas


def _group_by_module(
    state_dict: Mapping[str, torch.Tensor], module_names: set[str]
) -> dict[str, _ModuleWeights]:
    flat_names = {name.replace(".", "_"): name for name in module_names}
    modules: dict[str, _ModuleWeights] = {}
    for key, tensor in state_dict.items():
        weight, alpha = _WEIGHT.match(key), _ALPHA.match(key)
        match = weight or alpha
        if match is None:
            raise LoraKeyError(f"{key!r} is not a LoRA weight (lora_A/lora_B/lora_down/lora_up/alpha)")
        module = _module_name(match["module"], module_names, flat_names)
        if module is None:
            raise LoraKeyError(f"{key!r} names no layer of the LTX-Video transformer")
        parts = modules.setdefault(module, _ModuleWeights())
        parts.keys.append(key)
        if weight is not None:
            setattr(parts, "down" if _DOWN[weight["kind"]] == "A" else "up", tensor.float())
        else:
            parts.alpha = float(tensor.float().reshape(-1)[0])
    return modules


def _module_name(raw: str, module_names: set[str], flat_names: dict[str, str]) -> str | None:
    """The transformer module `raw` names, whatever its prefix and layout, or None."""
    name = raw
    for prefix in _PREFIXES:
        name = name.removeprefix(prefix)
    for prefix in _FLAT_PREFIXES:
        if name.startswith(prefix):
            return flat_names.get(_rename_original(name.removeprefix(prefix)))
    name = _rename_original(name)
    return name if name in module_names else None


def _rename_original(name: str) -> str:
    for original, renamed in _ORIGINAL_MODULE_NAMES.items():
        if name == original or name.startswith((f"{original}.", f"{original}_")):
            return renamed + name[len(original) :]
    return name
