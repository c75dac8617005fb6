"""Issue 9: LTX-2.3 transformer FLOPs per forward at the spec default geometry, counted on `meta`.

Run: `.venv/bin/python -m bench.ltx2_flops`. Builds the real-size transformer without weights
(`service.models.ltx2.build_ltx2_at_real_shapes`) and counts one forward with torch's FlopCounterMode at
stage 1 (640x352) and stage 2 (1280x704), 121 frames, 126 audio tokens, 1024 text tokens.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from service.models.ltx2 import build_ltx2_at_real_shapes

TEXT_TOKENS = 1024
AUDIO_TOKENS = 126  # round(121 / 24 * 25)
LATENT_FRAMES = 16  # (121 - 1) / 8 + 1


def forward_flops(transformer: torch.nn.Module, height: int, width: int) -> int:
    h, w = height // 32, width // 32
    tokens = LATENT_FRAMES * h * w
    with torch.device("meta"):
        kwargs = {
            "hidden_states": torch.randn(1, tokens, 128),
            "audio_hidden_states": torch.randn(1, AUDIO_TOKENS, 128),
            "encoder_hidden_states": torch.randn(1, TEXT_TOKENS, 4096),
            "audio_encoder_hidden_states": torch.randn(1, TEXT_TOKENS, 2048),
            "encoder_attention_mask": torch.ones(1, TEXT_TOKENS),
            "audio_encoder_attention_mask": torch.ones(1, TEXT_TOKENS),
            "timestep": torch.full((1,), 500.0),
            "sigma": torch.full((1,), 500.0),
        }
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            transformer(**kwargs, num_frames=LATENT_FRAMES, height=h, width=w, fps=24.0,
                        audio_num_frames=AUDIO_TOKENS, return_dict=False)  # fmt: skip
    return int(counter.get_total_flops())


def main() -> None:
    transformer = build_ltx2_at_real_shapes("meta")["transformer"]
    params = sum(p.numel() for p in transformer.parameters())
    print(f"transformer parameters: {params / 1e9:.3f} B")
    for label, (height, width) in {"stage 1 640x352": (352, 640), "stage 2 1280x704": (704, 1280)}.items():
        tokens = LATENT_FRAMES * (height // 32) * (width // 32)
        print(
            f"{label}: {tokens} video tokens, {forward_flops(transformer, height, width) / 1e12:.1f} TFLOP/forward"
        )


if __name__ == "__main__":
    main()
