"""Seams of long videos: our latent-window method against the reference pipeline (tiny preset, 241 frames).

    python -m bench.long_video_seams [--frames 241] [--size 96] [--seeds 0 1 2]

The metric (from the fidelity audit, /work/shared/research): the mean absolute change between consecutive
uint8 frames, at the frames where one window hands over to the next, divided by the median of the same
change at the other latent-group starts (frames 8k + 1, where the VAE's frame-to-frame change is
largest anyway). 1.0 means a seam is no more visible than any other latent boundary.

For a window starting at latent frame s, the hand-over frames are the first frames of latent frames
s + 1 .. s + overlap (the crossfade and the first frame of the window's own frames); per seam we report
the largest ratio among them.

- ours: `generate_distilled` (two passes per window, one tiled decode), default windows (16 latent
  frames, overlap 3, tail strength 0.5, temporal_adain_factor 0.5);
- reference: diffusers' `LTXI2VLongMultiPromptPipeline` (the port of ComfyUI's `LTXVLoopingSampler`) on the
  same tiny weights, the same windows (temporal_tile_size 128, temporal_overlap 24), the distilled
  first-pass sigmas, adain_factor 0.5, one pass, one spatially untiled decode, with ComfyUI's Euler
  ancestral sampler (`LTXEulerAncestralRFScheduler`, the port's parity setting) or plain Euler.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
from collections.abc import Sequence

import numpy as np
import torch
from diffusers.pipelines.ltx.pipeline_ltx_i2v_long_multi_prompt import LTXI2VLongMultiPromptPipeline
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from diffusers.schedulers.scheduling_ltx_euler_ancestral_rf import LTXEulerAncestralRFScheduler

from bench.two_pass_vs_single import spec_for
from service.config import ModelConfig
from service.domain.geometry import Resolution
from service.domain.job_context import JobContext
from service.engines import torch_bindings
from service.models import loading
from service.pipelines.distilled import generate_distilled
from service.pipelines.latent_windows import Window
from service.pipelines.long_video import LongVideoOptions, window_plan
from service.pipelines.schedules import DISTILLED_13B_097_FIRST_PASS_TIMESTEPS


def seam_ratios(frames: np.ndarray, windows: Sequence[Window], overlap: int) -> list[float]:
    """Per window hand-over: max over its frames of change / median change at other 8k+1 frames."""
    video = frames.astype(np.float32)
    change = np.abs(np.diff(video, axis=0)).mean(axis=(1, 2, 3))  # change[t - 1]: frame t vs t - 1
    seams = [[8 * k - 7 for k in range(w.start + 1, w.start + overlap + 1)] for w in windows[1:]]
    seam_frames = {t for group in seams for t in group}
    others = [change[t - 1] for t in range(9, len(video), 8) if t not in seam_frames]
    typical = float(np.median(others))
    return [max(float(change[t - 1]) for t in group if t < len(video)) / typical for group in seams]


def ours(frames: int, size: int, seed: int) -> np.ndarray:
    components = torch_bindings.load_components(ModelConfig())
    spec = dataclasses.replace(
        spec_for(size, size, frames), resolution=Resolution.P480, seed=seed, temporal_adain_factor=0.5
    )
    video = generate_distilled(components, spec, (), JobContext.create())
    return np.asarray(video.frames)


def reference(frames: int, size: int, seed: int, options: LongVideoOptions, ancestral: bool) -> np.ndarray:
    models = loading.load_models(ModelConfig())
    scheduler = (
        LTXEulerAncestralRFScheduler()  # ComfyUI's sampler, which the port names for parity
        if ancestral
        else FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False, shift=1.0)
    )
    pipe = LTXI2VLongMultiPromptPipeline(
        scheduler=scheduler,
        vae=models.vae,
        text_encoder=models.text_encoder,
        tokenizer=models.tokenizer,
        transformer=models.transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    spec = spec_for(size, size, frames)
    with torch.inference_mode():
        video = pipe(
            prompt=spec.prompt,
            height=size,
            width=size,
            num_frames=frames,
            frame_rate=spec.frame_rate,
            sigmas=[*DISTILLED_13B_097_FIRST_PASS_TIMESTEPS, 0.0],  # it runs all but the last
            seed=seed,
            temporal_tile_size=options.window_latent_frames * 8,
            temporal_overlap=options.overlap_latent_frames * 8,
            temporal_overlap_cond_strength=options.tail_strength,
            adain_factor=0.5,
            decode_horizontal_tiles=1,
            decode_vertical_tiles=1,
            max_sequence_length=256,
            output_type="pt",
        ).frames
    pixels = video[0].float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)  # [3, F, H, W]
    return pixels.permute(1, 2, 3, 0).numpy()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=241)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--reference-scheduler", choices=["ancestral", "euler"], default="ancestral")
    args = parser.parse_args(argv)
    options = LongVideoOptions()
    windows = window_plan((args.frames - 1) // 8 + 1, options)
    print(f"{args.frames} frames at {args.size}x{args.size}, tiny preset, {os.cpu_count()} CPUs (shared)")
    print(
        f"windows (latent frames): {[tuple(w) for w in windows]}; reference sampler: {args.reference_scheduler}"
    )
    rows: dict[str, list[float]] = {"ours": [], "reference": []}
    for seed in args.seeds:
        for name, frames in (
            ("ours", ours(args.frames, args.size, seed)),
            (
                "reference",
                reference(args.frames, args.size, seed, options, args.reference_scheduler == "ancestral"),
            ),
        ):
            ratios = seam_ratios(frames, windows, options.overlap_latent_frames)
            rows[name].append(max(ratios))
            print(
                f"seed {seed} {name:9s}: frames {frames.shape[0]}, seam ratios {[round(r, 3) for r in ratios]}"
            )
    for name, worst in rows.items():
        print(
            f"{name:9s}: worst seam ratio per seed {[round(r, 3) for r in worst]}, mean {statistics.mean(worst):.3f}"
        )


if __name__ == "__main__":
    main()
