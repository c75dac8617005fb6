"""LTX-2.3 text-to-video with audio: our sampling loop on diffusers' LTX-2 models and helpers.

- `schedules`: the three sigma schedules (ltx2, linear_quadratic, beta) and the distilled ones.
- `guidance`: which passes a step needs, and the x0-space combination with std-rescale.
- `denoiser`: one guided x0 prediction per step from the audio-video transformer (batched passes, STG per
  modality, the acceleration levels' guidance reuse).
- `sampler`: the loop (Euler, gradient estimation, restart noise).
- `text_to_video`: prompt encoding, the two stages, the upsampler, LoRAs per pass, decode.
"""
