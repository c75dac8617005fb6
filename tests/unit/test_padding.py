"""Output sizes off the latent grid: generated padded up to 32 and cropped back, as upstream inference.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from service.config import ModelConfig
from service.domain.geometry import FrameSize
from service.domain.job_context import JobContext
from service.domain.specs import TextToVideoSpec
from service.engines import torch_bindings
from service.pipelines.conditioning import ConditioningMedia
from service.pipelines.multiconditioning import generate_text_to_video
from service.pipelines.padding import crop_frames, pad_media

OUTPUT = FrameSize(80, 40)  # generated 96x64: padding (8, 8, 12, 12)


def test_media_are_padded_with_black_around_the_output_frame() -> None:
    pixels = torch.rand(1, 3, 1, 40, 80) * 2 - 1
    padded = pad_media(ConditioningMedia(pixels=pixels, start_frame=0, strength=1.0), OUTPUT).pixels
    assert padded.shape[-2:] == (64, 96)
    assert torch.equal(padded[..., 12:52, 8:88], pixels)
    assert torch.all(padded[..., :12, :] == -1) and torch.all(padded[..., :, :8] == -1)


def test_frames_are_cropped_back_to_the_output_frame() -> None:
    frames = np.arange(2 * 64 * 96 * 3, dtype=np.int64).reshape(2, 64, 96, 3).astype(np.uint8)
    assert np.array_equal(crop_frames(frames, OUTPUT), frames[:, 12:52, 8:88])


def test_text_to_video_generates_the_padded_frame_and_returns_the_nominal_one() -> None:
    components = torch_bindings.load_components(ModelConfig())
    spec = TextToVideoSpec(
        prompt="a cat",
        negative_prompt="",
        width=OUTPUT.width,
        height=OUTPUT.height,
        num_frames=9,
        num_inference_steps=2,
        frame_rate=24,
        seed=1,
    )
    tokens: list[int] = []
    video = generate_text_to_video(
        dataclasses.replace(components, transformer=_Counting(components.transformer, tokens)),  # type: ignore[arg-type]
        spec,
        JobContext.create(),
    )
    assert video.frames.shape == (9, 40, 80, 3)
    assert set(tokens) == {3 * 2 * 2}  # 96/32 x 64/32 cells x 2 latent frames


class _Counting:
    def __init__(self, inner: object, tokens: list[int]) -> None:
        self.inner, self.tokens = inner, tokens

    @property
    def num_blocks(self) -> int:
        return self.inner.num_blocks  # type: ignore[attr-defined]

    def velocity(self, latents: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        self.tokens.append(latents.shape[1])
        return self.inner.velocity(latents, *args, **kwargs)  # type: ignore[attr-defined]
