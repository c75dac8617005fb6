"""Protobuf <-> domain: endpoint Input messages to normalized specs, job outputs to Output messages.

With the servicer, the only code that touches protobuf types. Each endpoint's converter
(`text_to_video_spec`, ...; the registry in service/api/endpoints.py picks it) expects a message that
validation passed: it applies the spec defaults (service/api/defaults.py) to unset fields, resolves the
geometry (service/domain/geometry.py) and draws the seed when the client gave none, so the spec records
everything needed to re-run the job identically. Output builders (`ltxv_output`, `ltx2_output`) turn a
finished job into the endpoint's Output message.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from ltx.v1 import endpoints_pb2 as pb
from ltx.v1 import types_pb2
from service.api import defaults
from service.domain import geometry
from service.domain.geometry import AspectRatio, FrameSize, Resolution, VideoSizePreset
from service.domain.outputs import JobOutput
from service.domain.specs import (
    Acceleration,
    CameraLora,
    DistilledMulticonditioningSpec,
    ExtendSpec,
    GuidanceSpec,
    ImageConditionSpec,
    LoraSpec,
    Ltx2TextToVideoSpec,
    MulticonditioningSpec,
    Scheduler,
    TextToVideoSpec,
    VideoConditionSpec,
    VideoOutputType,
    VideoQuality,
    VideoWriteMode,
)

MAX_DRAWN_SEED = 2**31 - 1  # drawn seeds stay in int32, which every client language holds

OutputT = TypeVar("OutputT", bound=Message)


def ltxv_output(output_type: type[OutputT], *, with_prompt: bool = True) -> Callable[[JobOutput], OutputT]:
    """The Output builder of an LTX-Video endpoint: seed, the video as a File, and the prompt used
    (the extend spec's output has none)."""

    def build(output: JobOutput) -> OutputT:
        message = output_type(seed=output.seed, video=_file(output))
        if with_prompt:
            message.prompt = output.prompt  # type: ignore[attr-defined]
        return message

    return build


def ltx2_output(output: JobOutput) -> pb.Ltx2TextToVideoOutput:
    """LTX-2.3's Output: the video as a VideoFile (size, fps, duration, frames)."""
    return pb.Ltx2TextToVideoOutput(seed=output.seed, prompt=output.prompt, video=_video_file(output))


def ltx2_json_aliases(data: dict[str, Any]) -> dict[str, Any]:
    """The spec lets video_size be an ImageSize object; the proto's oneof holds that as image_size."""
    if isinstance(data.get("video_size"), dict):
        data = {**data, "image_size": data["video_size"]}
        del data["video_size"]
    return data


def output_to_json(message: Message) -> dict[str, Any]:
    """An Output (or Input) message in the spec's JSON form: snake_case names, unset fields left out."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _value(message: Any, name: str, default: Any) -> Any:
    """The field's value when the client set it, else the spec's default."""
    return getattr(message, name) if message.HasField(name) else default


def _seed(message: Any, rng: random.Random) -> int:
    return int(message.seed) if message.HasField("seed") else rng.randint(0, MAX_DRAWN_SEED)


def _loras(loras: Iterable[types_pb2.LoRAWeight]) -> tuple[LoraSpec, ...]:
    # An empty path is "no LoRA" (only LTX-2.3 lets one through validation, as its spec example sends it).
    return tuple(
        LoraSpec(
            path=lora.path,
            scale=_value(lora, "scale", defaults.LORA_SCALE),
            weight_name=lora.weight_name or None,
        )
        for lora in loras
        if lora.path
    )


def _image(condition: Any, start_frame: int) -> ImageConditionSpec:
    strength = _value(condition, "strength", defaults.CONDITION_STRENGTH)
    return ImageConditionSpec(url=condition.image_url, start_frame=start_frame, strength=strength)


def _video(condition: Any, start_frame: int) -> VideoConditionSpec:
    strength = _value(condition, "strength", defaults.CONDITION_STRENGTH)
    return VideoConditionSpec(url=condition.video_url, start_frame=start_frame, strength=strength)


def _video_input(condition: types_pb2.VideoConditioningInput) -> VideoConditionSpec:
    """A VideoConditioningInput; its flag + value pairs become optional values (None = not limited)."""
    max_frames = _value(condition, "max_num_frames", defaults.CONDITION_MAX_NUM_FRAMES)
    target_fps = _value(condition, "target_fps", defaults.CONDITION_TARGET_FPS)
    return VideoConditionSpec(
        url=condition.video_url,
        start_frame=condition.start_frame_num,
        strength=_value(condition, "strength", defaults.CONDITION_STRENGTH),
        max_num_frames=max_frames if condition.limit_num_frames else None,
        target_fps=target_fps if condition.resample_fps else None,
    )


def _size(resolution: Resolution, aspect_ratio: AspectRatio, has_conditions: bool) -> FrameSize:
    """Exact size, or 0x0 while AUTO waits for the media; AUTO without media is 16:9."""
    if aspect_ratio is not AspectRatio.AUTO:
        return geometry.frame_size(resolution, aspect_ratio)
    if has_conditions:
        return FrameSize(0, 0)
    return geometry.frame_size(resolution, AspectRatio.R16_9)


def text_to_video_spec(message: pb.TextToVideoInput, rng: random.Random) -> TextToVideoSpec:
    d = defaults.TextToVideo
    size = geometry.frame_size(
        Resolution(_value(message, "resolution", d.RESOLUTION)),
        AspectRatio(_value(message, "aspect_ratio", d.ASPECT_RATIO)),
    )
    return TextToVideoSpec(
        prompt=message.prompt,
        negative_prompt=_value(message, "negative_prompt", d.NEGATIVE_PROMPT),
        width=size.width,
        height=size.height,
        num_frames=_value(message, "number_of_frames", d.NUMBER_OF_FRAMES),
        num_inference_steps=_value(message, "number_of_steps", d.NUMBER_OF_STEPS),
        frame_rate=_value(message, "frame_rate", d.FRAME_RATE),
        seed=_seed(message, rng),
        loras=_loras(message.loras),
        expand_prompt=message.expand_prompt,
        reverse_video=message.reverse_video,
        enable_safety_checker=_value(message, "enable_safety_checker", True),
    )


def multiconditioning_spec(message: pb.MulticonditioningInput, rng: random.Random) -> MulticonditioningSpec:
    d = defaults.Multiconditioning
    resolution = Resolution(_value(message, "resolution", d.RESOLUTION))
    aspect_ratio = AspectRatio(_value(message, "aspect_ratio", d.ASPECT_RATIO))
    size = _size(resolution, aspect_ratio, has_conditions=bool(message.images or message.videos))
    return MulticonditioningSpec(
        prompt=message.prompt,
        negative_prompt=_value(message, "negative_prompt", d.NEGATIVE_PROMPT),
        resolution=resolution,
        aspect_ratio=aspect_ratio,
        width=size.width,
        height=size.height,
        num_frames=_value(message, "number_of_frames", d.NUMBER_OF_FRAMES),
        num_inference_steps=_value(message, "number_of_steps", d.NUMBER_OF_STEPS),
        frame_rate=_value(message, "frame_rate", d.FRAME_RATE),
        seed=_seed(message, rng),
        loras=_loras(message.loras),
        images=tuple(_image(image, image.start_frame_number) for image in message.images),
        videos=tuple(_video(video, video.start_frame_number) for video in message.videos),
        expand_prompt=message.expand_prompt,
        reverse_video=message.reverse_video,
        enable_safety_checker=_value(message, "enable_safety_checker", True),
    )


def distilled_spec(
    message: pb.DistilledMulticonditioningInput, rng: random.Random
) -> DistilledMulticonditioningSpec:
    d = defaults.DistilledMulticonditioning
    resolution = Resolution(_value(message, "resolution", d.RESOLUTION))
    aspect_ratio = AspectRatio(_value(message, "aspect_ratio", d.ASPECT_RATIO))
    size = _size(resolution, aspect_ratio, has_conditions=bool(message.images or message.videos))
    return DistilledMulticonditioningSpec(
        prompt=message.prompt,
        negative_prompt=_value(message, "negative_prompt", d.NEGATIVE_PROMPT),
        resolution=resolution,
        aspect_ratio=aspect_ratio,
        width=size.width,
        height=size.height,
        num_frames=_value(message, "num_frames", d.NUM_FRAMES),
        first_pass_num_inference_steps=_value(
            message, "first_pass_num_inference_steps", d.FIRST_PASS_NUM_INFERENCE_STEPS
        ),
        second_pass_num_inference_steps=_value(
            message, "second_pass_num_inference_steps", d.SECOND_PASS_NUM_INFERENCE_STEPS
        ),
        second_pass_skip_initial_steps=_value(
            message, "second_pass_skip_initial_steps", d.SECOND_PASS_SKIP_INITIAL_STEPS
        ),
        frame_rate=_value(message, "frame_rate", d.FRAME_RATE),
        seed=_seed(message, rng),
        temporal_adain_factor=_value(message, "temporal_adain_factor", d.TEMPORAL_ADAIN_FACTOR),
        tone_map_compression_ratio=message.tone_map_compression_ratio,
        constant_rate_factor=_value(message, "constant_rate_factor", d.CONSTANT_RATE_FACTOR),
        loras=_loras(message.loras),
        images=tuple(_image(image, image.start_frame_num) for image in message.images),
        videos=tuple(_video_input(video) for video in message.videos),
        expand_prompt=message.expand_prompt,
        reverse_video=message.reverse_video,
        enable_safety_checker=_value(message, "enable_safety_checker", True),
        enable_detail_pass=message.enable_detail_pass,
    )


def extend_spec(message: pb.ExtendInput, rng: random.Random) -> ExtendSpec:
    d = defaults.Extend
    size = geometry.frame_size(
        Resolution(_value(message, "resolution", d.RESOLUTION)),
        AspectRatio(_value(message, "aspect_ratio", d.ASPECT_RATIO)),
    )
    return ExtendSpec(
        prompt=message.prompt,
        negative_prompt=_value(message, "negative_prompt", d.NEGATIVE_PROMPT),
        width=size.width,
        height=size.height,
        num_frames=d.NUM_FRAMES,
        frame_rate=d.FRAME_RATE,
        num_inference_steps=_value(message, "num_inference_steps", d.NUM_INFERENCE_STEPS),
        seed=_seed(message, rng),
        video=_video_input(message.video),
        expand_prompt=_value(message, "expand_prompt", d.EXPAND_PROMPT),
    )


def _ltx2_size(message: pb.Ltx2TextToVideoInput) -> FrameSize:
    if message.WhichOneof("video_size_choice") == "image_size":
        side = defaults.Ltx2TextToVideo.IMAGE_SIDE
        custom = message.image_size
        return geometry.custom_size(_value(custom, "width", side), _value(custom, "height", side))
    preset = message.video_size or defaults.Ltx2TextToVideo.VIDEO_SIZE
    return geometry.ltx2_preset_size(VideoSizePreset(preset))


def _ltx2_guidance(message: pb.Ltx2TextToVideoInput) -> tuple[GuidanceSpec, GuidanceSpec]:
    d = defaults.Ltx2TextToVideo
    video = GuidanceSpec(
        cfg_scale=_value(message, "video_cfg_scale", d.VIDEO_CFG_SCALE),
        stg_scale=_value(message, "video_stg_scale", d.VIDEO_STG_SCALE),
        rescaling_scale=_value(message, "video_rescaling_scale", d.VIDEO_RESCALING_SCALE),
        modality_scale=_value(message, "video_modality_scale", d.VIDEO_MODALITY_SCALE),
    )
    audio = GuidanceSpec(
        cfg_scale=_value(message, "audio_cfg_scale", d.AUDIO_CFG_SCALE),
        stg_scale=message.audio_stg_scale,
        rescaling_scale=_value(message, "audio_rescaling_scale", d.AUDIO_RESCALING_SCALE),
        modality_scale=_value(message, "audio_modality_scale", d.AUDIO_MODALITY_SCALE),
    )
    return video, audio


def ltx2_spec(message: pb.Ltx2TextToVideoInput, rng: random.Random) -> Ltx2TextToVideoSpec:
    d = defaults.Ltx2TextToVideo
    size = _ltx2_size(message)
    video_guidance, audio_guidance = _ltx2_guidance(message)
    return Ltx2TextToVideoSpec(
        prompt=message.prompt,
        negative_prompt=_value(message, "negative_prompt", d.NEGATIVE_PROMPT),
        width=size.width,
        height=size.height,
        num_frames=_value(message, "num_frames", d.NUM_FRAMES),
        fps=_value(message, "fps", d.FPS),
        num_inference_steps=_value(message, "num_inference_steps", d.NUM_INFERENCE_STEPS),
        seed=_seed(message, rng),
        video_guidance=video_guidance,
        audio_guidance=audio_guidance,
        gradient_estimation_gamma=message.gradient_estimation_gamma,
        scheduler=Scheduler(_value(message, "scheduler", d.SCHEDULER)),
        acceleration=Acceleration(_value(message, "acceleration", d.ACCELERATION)),
        camera_lora=CameraLora(_value(message, "camera_lora", d.CAMERA_LORA)),
        camera_lora_scale=_value(message, "camera_lora_scale", d.CAMERA_LORA_SCALE),
        distill_lora_first_pass_scale=_value(
            message, "distill_lora_first_pass_scale", d.DISTILL_LORA_FIRST_PASS_SCALE
        ),
        distill_lora_second_pass_scale=_value(
            message, "distill_lora_second_pass_scale", d.DISTILL_LORA_SECOND_PASS_SCALE
        ),
        output_type=VideoOutputType(_value(message, "video_output_type", d.VIDEO_OUTPUT_TYPE)),
        video_quality=VideoQuality(_value(message, "video_quality", d.VIDEO_QUALITY)),
        video_write_mode=VideoWriteMode(_value(message, "video_write_mode", d.VIDEO_WRITE_MODE)),
        loras=_loras(message.loras),
        generate_audio=_value(message, "generate_audio", True),
        use_multiscale=_value(message, "use_multiscale", True),
        use_restart_sampling=_value(message, "use_restart_sampling", True),
        expand_prompt=_value(message, "enable_prompt_expansion", True),
        enable_safety_checker=_value(message, "enable_safety_checker", True),
        sync_mode=message.sync_mode,
    )


def _file(output: JobOutput) -> types_pb2.File:
    stored = output.video
    return types_pb2.File(
        url=stored.url,
        content_type=stored.content_type,
        file_name=stored.file_name,
        file_size=stored.file_size,
    )


def _video_file(output: JobOutput) -> types_pb2.VideoFile:
    stored = output.video
    return types_pb2.VideoFile(
        url=stored.url,
        content_type=stored.content_type,
        file_name=stored.file_name,
        file_size=stored.file_size,
        width=output.width,
        height=output.height,
        fps=output.frame_rate,
        duration=geometry.duration_seconds(output.num_frames, output.frame_rate),
        num_frames=output.num_frames,
    )
