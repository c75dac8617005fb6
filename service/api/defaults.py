"""The defaults of each endpoint's spec (shared/spec/*.md), applied by convert.py to unset fields.

Validation reads them too: a condition's start frame is checked against the frame count the output will
have, which is the default when the request leaves it unset.
"""

from __future__ import annotations

from typing import Final

from service.domain.geometry import AspectRatio, Resolution, VideoSizePreset
from service.domain.specs import (
    Acceleration,
    CameraLora,
    Scheduler,
    VideoOutputType,
    VideoQuality,
    VideoWriteMode,
)

LTXV_DEV_NEGATIVE_PROMPT: Final = (
    "blurry, low quality, low resolution, inconsistent motion, jittery, distorted"
)
LTXV_097_NEGATIVE_PROMPT: Final = "worst quality, inconsistent motion, blurry, jittery, distorted"
LTX2_NEGATIVE_PROMPT: Final = (
    "news broadcast, 3d animation, computer graphics, pc game, console game, video game, cartoon, "
    "childish, watermark, logo, text, on screen text, subtitles, titles, signature, slowmo, static"
)

LORA_SCALE: Final = 1.0
CONDITION_STRENGTH: Final = 1.0
CONDITION_MAX_NUM_FRAMES: Final = 1441  # VideoConditioningInput.max_num_frames
CONDITION_TARGET_FPS: Final = 24  # VideoConditioningInput.target_fps


class TextToVideo:
    """`ltx-video-lora`."""

    NEGATIVE_PROMPT: Final = LTXV_DEV_NEGATIVE_PROMPT
    RESOLUTION: Final = Resolution.P720
    ASPECT_RATIO: Final = AspectRatio.R16_9
    NUMBER_OF_FRAMES: Final = 89
    NUMBER_OF_STEPS: Final = 30
    FRAME_RATE: Final = 25


class Multiconditioning:
    """`ltx-video-lora/multiconditioning`: as text-to-video, but the aspect ratio follows the media."""

    NEGATIVE_PROMPT: Final = LTXV_DEV_NEGATIVE_PROMPT
    RESOLUTION: Final = Resolution.P720
    ASPECT_RATIO: Final = AspectRatio.AUTO
    NUMBER_OF_FRAMES: Final = 89
    NUMBER_OF_STEPS: Final = 30
    FRAME_RATE: Final = 25


class DistilledMulticonditioning:
    """`ltx-video-13b-distilled/multiconditioning`."""

    NEGATIVE_PROMPT: Final = LTXV_097_NEGATIVE_PROMPT
    RESOLUTION: Final = Resolution.P720
    ASPECT_RATIO: Final = AspectRatio.AUTO
    NUM_FRAMES: Final = 121
    FIRST_PASS_NUM_INFERENCE_STEPS: Final = 8
    SECOND_PASS_NUM_INFERENCE_STEPS: Final = 8
    SECOND_PASS_SKIP_INITIAL_STEPS: Final = 5
    FRAME_RATE: Final = 24
    TEMPORAL_ADAIN_FACTOR: Final = 0.5
    CONSTANT_RATE_FACTOR: Final = 29


class Extend:
    """`ltx-video-v097/extend`. The spec sets no output length or frame rate; these are the service's."""

    NEGATIVE_PROMPT: Final = LTXV_097_NEGATIVE_PROMPT
    RESOLUTION: Final = Resolution.P720
    ASPECT_RATIO: Final = AspectRatio.R16_9
    NUM_INFERENCE_STEPS: Final = 40
    EXPAND_PROMPT: Final = True
    NUM_FRAMES: Final = 121  # LTX-Video 0.9.7's default clip: about 5 s at 24 fps
    FRAME_RATE: Final = 24


class Ltx2TextToVideo:
    """`ltx-2.3-22b/text-to-video/lora`."""

    NEGATIVE_PROMPT: Final = LTX2_NEGATIVE_PROMPT
    NUM_FRAMES: Final = 121
    VIDEO_SIZE: Final = VideoSizePreset.LANDSCAPE_16_9
    IMAGE_SIDE: Final = 512  # ImageSize.width / height when unset
    FPS: Final = 24.0
    NUM_INFERENCE_STEPS: Final = 15
    VIDEO_CFG_SCALE: Final = 3.0
    VIDEO_STG_SCALE: Final = 1.0
    VIDEO_RESCALING_SCALE: Final = 0.85
    VIDEO_MODALITY_SCALE: Final = 3.0
    AUDIO_CFG_SCALE: Final = 7.0
    AUDIO_RESCALING_SCALE: Final = 0.7
    AUDIO_MODALITY_SCALE: Final = 3.0
    SCHEDULER: Final = Scheduler.BETA
    ACCELERATION: Final = Acceleration.NONE
    CAMERA_LORA: Final = CameraLora.NONE
    CAMERA_LORA_SCALE: Final = 1.0
    VIDEO_OUTPUT_TYPE: Final = VideoOutputType.X264_MP4
    VIDEO_QUALITY: Final = VideoQuality.HIGH
    VIDEO_WRITE_MODE: Final = VideoWriteMode.BALANCED
    DISTILL_LORA_FIRST_PASS_SCALE: Final = 0.2
    DISTILL_LORA_SECOND_PASS_SCALE: Final = 0.5
