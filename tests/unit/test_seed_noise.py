"""Issue 10, item 10: the same seed gives upstream's noise (Lightricks' `LTXVideoPipeline`).

- the starting noise is drawn as randn((b, f*h*w, c)) (`prepare_latents`), i.e. already in the packed
  token order, not as (b, c, f, h, w);
- a conditioned run draws the re-noise of the hard tokens every step, for all tokens, even when no token
  has strength 1 (`add_noise_to_image_conditioning_latents` runs whenever conditioning items exist); an
  unconditioned run draws none;
- the decode noise comes from a stream of its own seeded with the seed (upstream: `torch.randn_like` on
  the global RNG that `seed_everething(seed)` seeded), not from the sampling generator.
The expected values are independent draws from fresh generators.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from service.config import ModelConfig
from service.domain.job_context import JobContext
from service.domain.specs import TextToVideoSpec
from service.engines import torch_bindings
from service.models import loading
from service.pipelines.components import Components
from service.pipelines.conditioning import (
    ConditioningMedia,
    ConditioningOptions,
    denoise_conditioned,
    prepare_conditioned_latents,
)
from service.pipelines.latents import denormalize, latent_shape
from service.pipelines.multiconditioning import DevSamplingOptions, generate_text_to_video
from service.pipelines.text_to_video import DecodeOptions
from tests.unit.test_parity_dev import RecordingDecoder

SEED = 11
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def components() -> Components:
    return torch_bindings.bind_components(loading.load_models(ModelConfig()))


def test_starting_noise_is_upstreams_packed_draw(components: Components) -> None:
    shape = latent_shape(components.geometry, 1, 17, 64, 96)
    state = prepare_conditioned_latents(components, shape, (), 24.0, torch.Generator().manual_seed(SEED), CPU)
    expected = torch.randn(
        (1, shape.num_tokens, shape.channels), generator=torch.Generator().manual_seed(SEED)
    )
    assert torch.equal(state.tokens, expected)
    # diffusers' layout, drawn from the same seed, is a different tensor (so this test can fail).
    diffusers_layout = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(SEED))
    assert not torch.equal(state.tokens, diffusers_layout.flatten(2).transpose(1, 2))


def _zero_velocity(latents: torch.Tensor, _timesteps: torch.Tensor, _step: int) -> torch.Tensor:
    return torch.zeros_like(latents)


@pytest.mark.parametrize(("strength", "conditioned"), [(0.5, True), (1.0, True), (None, False)])
def test_re_noise_is_drawn_every_step_of_a_conditioned_run(
    components: Components, strength: float | None, conditioned: bool
) -> None:
    shape = latent_shape(components.geometry, 1, 9, 64, 64)
    media = []
    if strength is not None:
        image = torch.zeros(1, 3, 1, 64, 64)
        media.append(ConditioningMedia(pixels=image, start_frame=0, strength=strength))
    generator = torch.Generator().manual_seed(SEED)
    state = prepare_conditioned_latents(components, shape, media, 24.0, generator, CPU)
    steps = 3
    denoise_conditioned(
        state,
        [1.0, 0.6, 0.3],
        _zero_velocity,
        generator,
        lambda _: None,
        lambda: False,
        ConditioningOptions(),
    )
    # Upstream's stream: the starting noise, then one draw of all tokens per step when conditioned.
    reference = torch.Generator().manual_seed(SEED)
    torch.randn((1, shape.num_tokens, shape.channels), generator=reference)
    for _ in range(steps if conditioned else 0):
        torch.randn((1, shape.num_tokens, shape.channels), generator=reference)
    assert torch.equal(generator.get_state(), reference.get_state())


def test_decode_noise_is_a_stream_of_its_own_seeded_with_the_seed(components: Components) -> None:
    spec = TextToVideoSpec(
        prompt="p", negative_prompt="n", width=64, height=64, num_frames=9, num_inference_steps=2,
        frame_rate=24, seed=SEED,
    )  # fmt: skip
    assert components.geometry.decode_timestep_conditioning
    recorder = RecordingDecoder(components.vae_decoder)
    # Decode noise scale 1: the decoder sees the decode noise alone (lerp(latents, noise, 1) = noise).
    options = DevSamplingOptions(decoding=DecodeOptions(decode_noise_scale=1.0))
    generate_text_to_video(
        dataclasses.replace(components, vae_decoder=recorder), spec, JobContext.create(), options
    )
    (decoded,) = recorder.latents
    expected = torch.randn(tuple(decoded.shape), generator=torch.Generator().manual_seed(SEED))
    assert torch.allclose(decoded, denormalize(expected, components.geometry), atol=1e-6)
