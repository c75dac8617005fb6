"""The distilled two-pass pipeline against one full-resolution pass with the same number of steps.

    python -m bench.two_pass_vs_single [--num-frames 49] [--width 1280 --height 704]

Both run on the tiny preset at the spec example's size (720p 16:9 = 1280x704) with the default distilled
settings: the two-pass pipeline runs 7 first-pass steps at 832x448, the latent upsampler, 3 second-pass
steps at 1664x896 and decodes there, then resizes to 1280x704; the single pass runs the 10-step
linear-quadratic schedule (7 + 3 transformer calls) at 1280x704 and decodes there. Each side runs in its
own fresh subprocess (after a small warm-up run), so its peak RSS (ru_maxrss) is its own; the ratio comes
from the one invocation. Tiny weights: the times say what the pipeline's shapes cost, not a real GPU's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any, cast

import torch

from service.config import ModelConfig
from service.contract.frames import latent_tokens
from service.domain.geometry import AspectRatio, FrameSize, Resolution
from service.domain.job_context import JobContext
from service.domain.specs import DistilledMulticonditioningSpec
from service.engines import torch_bindings
from service.pipelines import distilled
from service.pipelines.components import Components
from service.pipelines.conditioning import denoise_conditioned, generated_tokens, prepare_conditioned_latents
from service.pipelines.latents import latent_shape, unpack
from service.pipelines.schedules import linear_quadratic_sigmas

VARIANTS = ("two-pass", "single-pass")


def spec_for(width: int, height: int, num_frames: int) -> DistilledMulticonditioningSpec:
    return DistilledMulticonditioningSpec(
        prompt="A vibrant, abstract composition featuring a person with outstretched arms",
        negative_prompt="worst quality, inconsistent motion, blurry, jittery, distorted",
        resolution=Resolution.P720,
        aspect_ratio=AspectRatio.R16_9,
        width=width,
        height=height,
        num_frames=num_frames,
        first_pass_num_inference_steps=8,
        second_pass_num_inference_steps=8,
        second_pass_skip_initial_steps=5,
        frame_rate=24,
        seed=0,
        temporal_adain_factor=0.5,
        tone_map_compression_ratio=0.0,
        constant_rate_factor=29,
    )


def single_pass(components: Components, spec: DistilledMulticonditioningSpec, steps: int) -> Any:
    """One pass at the output size over the `steps`-step distilled (linear-quadratic) schedule."""
    shape = latent_shape(components.geometry, 1, spec.num_frames, spec.height, spec.width)
    generator = torch.Generator().manual_seed(spec.seed)
    embeds, mask = components.text_encoder.encode([spec.prompt])
    with torch.inference_mode():
        state = prepare_conditioned_latents(components, shape, (), spec.frame_rate, generator, embeds.device)

        def velocity(latents: torch.Tensor, timestep: torch.Tensor, _step: int) -> torch.Tensor:
            return components.transformer.velocity(latents, timestep, state.coords, embeds, mask)

        sigmas = linear_quadratic_sigmas(steps)
        tokens = denoise_conditioned(state, sigmas, velocity, generator, lambda _: None, lambda: False)
        latents = unpack(generated_tokens(tokens, state.num_extra_tokens), shape, components.geometry)
        chunks = distilled.decode(components, latents, generator, 0.0, distilled.DistilledOptions())
        video = torch.cat([chunk.video for chunk in chunks], dim=1)[None]
        return distilled.to_output_frames(video, FrameSize(spec.width, spec.height))


class Timed:
    """A component proxy that adds up the seconds spent in its calls."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds = inner, 0.0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


TIMED_COMPONENTS = ("transformer", "upsampler", "vae_decoder")


def run_variant(variant: str, spec: DistilledMulticonditioningSpec) -> dict[str, Any]:
    loaded = torch_bindings.load_components(ModelConfig())
    timed = {name: Timed(getattr(loaded, name)) for name in TIMED_COMPONENTS}
    components = dataclasses.replace(loaded, **cast(dict[str, Any], timed))
    timesteps = distilled.clip_geometry(components, spec, spec.num_frames).timesteps
    steps = len(timesteps.first_pass) + len(timesteps.second_pass)

    def generate(target: DistilledMulticonditioningSpec) -> Any:
        if variant == "two-pass":
            return distilled.generate_distilled(components, target, (), JobContext.create()).frames
        return single_pass(components, target, steps)

    generate(dataclasses.replace(spec, width=64, height=64, num_frames=9))  # warm-up: kernels, lazy init
    for proxy in timed.values():
        proxy.seconds = 0.0
    baseline_mb = _max_rss_mb()
    started = time.perf_counter()
    frames = generate(spec)
    seconds = time.perf_counter() - started
    assert frames.shape == (spec.num_frames, spec.height, spec.width, 3), frames.shape
    return {
        "variant": variant,
        "seconds": seconds,
        "peak_rss_mb": _max_rss_mb(),
        "baseline_rss_mb": baseline_mb,
        "transformer_calls": steps,
        "component_seconds": {k: v.seconds for k, v in timed.items()},
    }


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _in_subprocess(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.two_pass_vs_single",
        "--variant",
        variant,
        "--num-frames",
        str(args.num_frames),
        "--width",
        str(args.width),
        "--height",
        str(args.height),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-frames", type=int, default=49)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=704)
    parser.add_argument("--variant", choices=VARIANTS, help="run one side here and print JSON (internal)")
    args = parser.parse_args(argv)
    spec = spec_for(args.width, args.height, args.num_frames)
    if args.variant:
        print(json.dumps(run_variant(args.variant, spec)))
        return
    rows = [_in_subprocess(variant, args) for variant in VARIANTS]
    clip = distilled.clip_geometry(torch_bindings.load_components(ModelConfig()), spec, spec.num_frames)
    tokens = {
        "two-pass": f"{latent_tokens(clip.sizes.first_pass, spec.num_frames)} + "
        f"{latent_tokens(clip.sizes.second_pass, spec.num_frames)}",
        "single-pass": str(latent_tokens(FrameSize(spec.width, spec.height), spec.num_frames)),
    }
    print(
        f"{spec.width}x{spec.height}, {spec.num_frames} frames, tiny preset, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "| variant | transformer calls | tokens per call | wall time (s) | in transformer (s) "
        "| in upsampler (s) | in VAE decoder (s) | peak RSS (MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        parts = row["component_seconds"]
        print(
            f"| {row['variant']} | {row['transformer_calls']} | {tokens[row['variant']]} | "
            f"{row['seconds']:.2f} | {parts['transformer']:.2f} | {parts['upsampler']:.2f} "
            f"| {parts['vae_decoder']:.2f} | {row['peak_rss_mb']:.0f} |"
        )
    two, one = rows
    print(
        f"two-pass / single-pass: time {two['seconds'] / one['seconds']:.2f}x, "
        f"peak RSS {two['peak_rss_mb'] / one['peak_rss_mb']:.2f}x"
    )


if __name__ == "__main__":
    main()
