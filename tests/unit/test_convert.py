"""Proto -> spec (defaults, presence, geometry, seeds), job output -> proto, and the specs' JSON round trip.

Expected values are the specs' documented defaults and hand-computed geometry, not conversion output.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from service.api.convert import MAX_DRAWN_SEED, output_to_json
from service.api.endpoints import API_ENDPOINTS, for_input, input_from_json, output_to_pb, to_spec
from service.domain.geometry import AspectRatio, Resolution
from service.domain.outputs import JobOutput, StoredFile
from service.domain.specs import (
    SPEC_TYPES,
    CameraLora,
    Endpoint,
    GuidanceSpec,
    ImageConditionSpec,
    LoraSpec,
    Scheduler,
    VideoConditionSpec,
    VideoOutputType,
    resolve_auto_size,
    spec_from_json,
    spec_to_json,
)

EXAMPLES = Path(__file__).parents[1] / "data" / "spec_examples"
IMAGE = "https://example.com/a.jpg"
VIDEO = "https://example.com/a.mp4"


def _example(endpoint: Endpoint, suffix: str = "") -> dict[str, Any]:
    name = endpoint.value.replace("/", "-")
    return json.loads((EXAMPLES / f"{name}{suffix}.json").read_text())


def _spec(endpoint: Endpoint, data: dict[str, Any], seed: int = 0) -> Any:
    return to_spec(input_from_json(endpoint, data), rng=random.Random(seed))


def test_text_to_video_defaults_are_the_specs() -> None:
    spec = _spec(Endpoint.TEXT_TO_VIDEO, {"prompt": "a cat"})
    assert (
        spec.negative_prompt == "blurry, low quality, low resolution, inconsistent motion, jittery, distorted"
    )
    assert (spec.width, spec.height) == (1280, 720)  # 720p 16:9, the nominal frame
    assert (spec.num_frames, spec.num_inference_steps, spec.frame_rate) == (89, 30, 25)
    assert (spec.expand_prompt, spec.reverse_video, spec.enable_safety_checker) == (False, False, True)
    assert spec.loras == ()


def test_named_sizes_follow_the_geometry_rule() -> None:
    spec = _spec(Endpoint.TEXT_TO_VIDEO, {"prompt": "a cat", "resolution": "480p", "aspect_ratio": "9:16"})
    assert (spec.width, spec.height) == (480, 854)
    extend = _spec(Endpoint.EXTEND, {"prompt": "go", "video": {"video_url": VIDEO}, "aspect_ratio": "9:16"})
    assert (extend.width, extend.height) == (720, 1280)


def test_explicit_zero_and_false_stay_unset_take_the_default() -> None:
    data = {
        "prompt": "a cat",
        "negative_prompt": "",
        "enable_safety_checker": False,
        "loras": [{"path": "/l/a.safetensors", "scale": 0}, {"path": "/l/b.safetensors"}],
        "images": [{"image_url": IMAGE, "strength": 0}, {"image_url": IMAGE, "start_frame_number": 8}],
    }
    spec = _spec(Endpoint.MULTICONDITIONING, data)
    assert spec.negative_prompt == ""
    assert spec.enable_safety_checker is False
    assert [lora.scale for lora in spec.loras] == [0.0, 1.0]
    assert spec.images == (ImageConditionSpec(IMAGE, 0, 0.0), ImageConditionSpec(IMAGE, 8, 1.0))


def test_seed_is_drawn_when_unset_and_kept_when_set() -> None:
    drawn = [_spec(Endpoint.TEXT_TO_VIDEO, {"prompt": "a cat"}, seed=s).seed for s in range(20)]
    assert all(0 <= seed <= 2**31 - 1 for seed in drawn)
    assert len(set(drawn)) > 1  # drawn from the rng, not a constant
    assert drawn[3] == _spec(Endpoint.TEXT_TO_VIDEO, {"prompt": "a cat"}, seed=3).seed  # same rng, same seed
    assert MAX_DRAWN_SEED == 2**31 - 1
    for kept in (0, 42, 2**32 - 1):
        assert _spec(Endpoint.LTX2_TEXT_TO_VIDEO, {"prompt": "a cat", "seed": kept}).seed == kept


def test_auto_aspect_ratio_waits_for_the_media() -> None:
    data = {"prompt": "a cat", "images": [{"image_url": IMAGE}]}
    spec = _spec(Endpoint.MULTICONDITIONING, data)
    assert (spec.aspect_ratio, spec.resolution) == (AspectRatio.AUTO, Resolution.P720)
    assert (spec.width, spec.height) == (0, 0)
    resolved = resolve_auto_size(spec, 4 / 3)
    assert (resolved.width, resolved.height) == (960, 720)
    assert resolve_auto_size(resolved, 16 / 9) == resolved  # an exact size is kept


def test_auto_aspect_ratio_without_media_is_16_9() -> None:
    spec = _spec(Endpoint.DISTILLED_MULTICONDITIONING, {"prompt": "a cat", "resolution": "480p"})
    assert spec.aspect_ratio is AspectRatio.AUTO
    assert (spec.width, spec.height) == (854, 480)


def test_distilled_example() -> None:
    spec = _spec(Endpoint.DISTILLED_MULTICONDITIONING, _example(Endpoint.DISTILLED_MULTICONDITIONING))
    assert spec.negative_prompt == "worst quality, inconsistent motion, blurry, jittery, distorted"
    assert (spec.num_frames, spec.frame_rate, spec.constant_rate_factor) == (121, 24, 29)
    assert (spec.first_pass_num_inference_steps, spec.second_pass_num_inference_steps) == (8, 8)
    assert spec.second_pass_skip_initial_steps == 5
    assert (spec.temporal_adain_factor, spec.tone_map_compression_ratio) == (0.5, 0.0)
    assert [image.start_frame for image in spec.images] == [0, 120]
    assert (spec.width, spec.height) == (0, 0)  # "auto" with images


def test_distilled_unset_adain_is_half_and_zero_stays_zero() -> None:
    assert _spec(Endpoint.DISTILLED_MULTICONDITIONING, {"prompt": "p"}).temporal_adain_factor == 0.5
    data = {"prompt": "p", "temporal_adain_factor": 0}
    assert _spec(Endpoint.DISTILLED_MULTICONDITIONING, data).temporal_adain_factor == 0.0


def test_video_conditioning_flags_become_optional_limits() -> None:
    videos = [
        {"video_url": VIDEO, "max_num_frames": 50, "target_fps": 12},  # flags off: values ignored
        {"video_url": VIDEO, "limit_num_frames": True, "max_num_frames": 50, "resample_fps": True},
        {"video_url": VIDEO, "limit_num_frames": True, "start_frame_num": 16, "strength": 0.5},
    ]
    spec = _spec(Endpoint.DISTILLED_MULTICONDITIONING, {"prompt": "p", "videos": videos})
    assert spec.videos == (
        VideoConditionSpec(VIDEO, 0, 1.0, max_num_frames=None, target_fps=None),
        VideoConditionSpec(VIDEO, 0, 1.0, max_num_frames=50, target_fps=24),
        VideoConditionSpec(VIDEO, 16, 0.5, max_num_frames=1441, target_fps=None),
    )


def test_extend_example() -> None:
    spec = _spec(Endpoint.EXTEND, _example(Endpoint.EXTEND))
    assert (spec.width, spec.height, spec.num_inference_steps) == (1280, 720, 40)
    assert spec.video == VideoConditionSpec(
        "https://storage.googleapis.com/falserverless/web-examples/wan/t2v.mp4", start_frame=24
    )
    assert (spec.num_frames, spec.frame_rate) == (121, 24)
    assert spec.expand_prompt is True
    unexpanded = _spec(
        Endpoint.EXTEND, {"prompt": "go", "video": {"video_url": VIDEO}, "expand_prompt": False}
    )
    assert unexpanded.expand_prompt is False


def test_ltx2_example() -> None:
    spec = _spec(Endpoint.LTX2_TEXT_TO_VIDEO, _example(Endpoint.LTX2_TEXT_TO_VIDEO))
    assert (spec.width, spec.height, spec.num_frames, spec.fps) == (1248, 704, 121, 24.0)
    assert spec.video_guidance == GuidanceSpec(
        cfg_scale=3, stg_scale=1, rescaling_scale=0.85, modality_scale=3
    )
    assert spec.audio_guidance == GuidanceSpec(
        cfg_scale=7, stg_scale=0, rescaling_scale=0.7, modality_scale=3
    )
    assert (spec.scheduler, spec.camera_lora, spec.output_type) == (
        Scheduler.BETA,
        CameraLora.NONE,
        VideoOutputType.X264_MP4,
    )
    assert (spec.distill_lora_first_pass_scale, spec.distill_lora_second_pass_scale) == (0.2, 0.5)
    assert spec.loras == ()  # the example's {"path": ""} is "no LoRA"
    assert (spec.generate_audio, spec.use_multiscale, spec.expand_prompt, spec.sync_mode) == (
        True,
        True,
        True,
        False,
    )


def test_ltx2_defaults_match_the_example_values() -> None:
    minimal = _spec(Endpoint.LTX2_TEXT_TO_VIDEO, {"prompt": _example(Endpoint.LTX2_TEXT_TO_VIDEO)["prompt"]})
    full = _spec(Endpoint.LTX2_TEXT_TO_VIDEO, _example(Endpoint.LTX2_TEXT_TO_VIDEO))
    assert minimal == full  # the spec's full example spells out every default


@pytest.mark.parametrize("key", ["video_size", "image_size"])
def test_ltx2_custom_size_object(key: str) -> None:
    spec = _spec(Endpoint.LTX2_TEXT_TO_VIDEO, {"prompt": "p", key: {"width": 1000, "height": 500}})
    assert (spec.width, spec.height) == (992, 480)
    unset_sides = _spec(Endpoint.LTX2_TEXT_TO_VIDEO, {"prompt": "p", key: {}})
    assert (unset_sides.width, unset_sides.height) == (512, 512)  # ImageSize's default


def test_ltx2_flags_and_enums() -> None:
    data = {
        "prompt": "p",
        "generate_audio": False,
        "camera_lora": "dolly_in",
        "scheduler": "ltx2",
        "fps": 23.976,
    }
    data["loras"] = [
        {"path": "https://example.com/l.safetensors", "weight_name": "w.safetensors", "scale": 0.5}
    ]
    spec = _spec(Endpoint.LTX2_TEXT_TO_VIDEO, data)
    assert (spec.generate_audio, spec.camera_lora, spec.scheduler) == (
        False,
        CameraLora.DOLLY_IN,
        Scheduler.LTX2,
    )
    assert spec.fps == 23.976  # double: no float32 rounding
    assert spec.loras == (LoraSpec("https://example.com/l.safetensors", 0.5, "w.safetensors"),)


def _job_output(**changes: Any) -> JobOutput:
    fields: dict[str, Any] = {
        "prompt": "a cat",
        "seed": 0,
        "video": StoredFile("https://files.example.com/out.mp4", "video/mp4", "out.mp4", 1234),
        "width": 1280,
        "height": 704,
        "num_frames": 89,
        "frame_rate": 25.0,
    }
    return JobOutput(**{**fields, **changes})


@pytest.mark.parametrize(
    "endpoint", [Endpoint.TEXT_TO_VIDEO, Endpoint.MULTICONDITIONING, Endpoint.DISTILLED_MULTICONDITIONING]
)
def test_output_has_prompt_seed_and_file(endpoint: Endpoint) -> None:
    result = output_to_json(output_to_pb(endpoint, _job_output()))
    video = {"url": "https://files.example.com/out.mp4", "content_type": "video/mp4", "file_name": "out.mp4"}
    assert result == {"prompt": "a cat", "seed": 0, "video": {**video, "file_size": 1234}}


def test_extend_output_has_no_prompt() -> None:
    result = output_to_json(output_to_pb(Endpoint.EXTEND, _job_output(seed=7)))
    assert set(result) == {"video", "seed"}
    assert result["seed"] == 7


def test_ltx2_output_reproduces_the_spec_example() -> None:
    expected = _example(Endpoint.LTX2_TEXT_TO_VIDEO, ".output")
    video = expected["video"]
    output = JobOutput(
        prompt=expected["prompt"],
        seed=expected["seed"],
        video=StoredFile(video["url"], video["content_type"], video["file_name"], 0),
        width=video["width"],
        height=video["height"],
        num_frames=video["num_frames"],
        frame_rate=video["fps"],
    )
    result = output_to_json(output_to_pb(Endpoint.LTX2_TEXT_TO_VIDEO, output))
    assert result["video"].pop("duration") == pytest.approx(video.pop("duration"))
    expected["video"] = video
    assert result == expected


@pytest.mark.parametrize("endpoint", list(Endpoint))
def test_spec_example_outputs_parse_and_print_as_written(endpoint: Endpoint) -> None:
    expected = _example(endpoint, ".output")
    message = output_to_pb(endpoint, _job_output())  # just for the message type
    assert output_to_json(json_format.ParseDict(expected, type(message)())) == expected


def test_every_endpoint_has_an_input_message() -> None:
    assert sorted(entry.endpoint for entry in API_ENDPOINTS) == sorted(Endpoint)


def test_input_from_json_accepts_the_provider_prefix_and_refuses_unknown_fields() -> None:
    message = input_from_json("fal-ai/ltx-video-lora", {"prompt": "a cat"})
    assert for_input(message).endpoint is Endpoint.TEXT_TO_VIDEO
    with pytest.raises(json_format.ParseError, match="num_frame"):
        input_from_json("ltx-video-lora", {"prompt": "a cat", "num_frame": 9})


ROUND_TRIP_INPUTS: dict[Endpoint, dict[str, Any]] = {
    Endpoint.TEXT_TO_VIDEO: {"prompt": "p", "loras": [{"path": "/l", "weight_name": "w"}]},
    Endpoint.MULTICONDITIONING: {
        "prompt": "p",
        "images": [{"image_url": IMAGE, "strength": 0.25}],
        "videos": [{"video_url": VIDEO, "start_frame_number": 8}],
    },
    Endpoint.DISTILLED_MULTICONDITIONING: {
        "prompt": "p",
        "videos": [{"video_url": VIDEO, "limit_num_frames": True}, {"video_url": VIDEO}],
    },
    Endpoint.EXTEND: {"prompt": "p", "video": {"video_url": VIDEO, "resample_fps": True}},
    Endpoint.LTX2_TEXT_TO_VIDEO: {"prompt": "p", "camera_lora": "jib_up", "fps": 23.976},
}


@pytest.mark.parametrize("endpoint", list(Endpoint))
@pytest.mark.parametrize("source", ["example", "varied"])
def test_spec_json_round_trip(endpoint: Endpoint, source: str) -> None:
    data = _example(endpoint) if source == "example" else ROUND_TRIP_INPUTS[endpoint]
    spec = _spec(endpoint, data, seed=11)
    assert type(spec) is SPEC_TYPES[endpoint]
    restored = spec_from_json(endpoint, spec_to_json(spec))
    assert restored == spec
    for field in dataclasses.fields(restored):  # enums come back as enums, tuples as tuples
        assert type(getattr(restored, field.name)) is type(getattr(spec, field.name)), field.name
