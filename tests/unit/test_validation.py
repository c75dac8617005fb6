"""Validation tables taken from the five specs (shared/spec/*.md) and the service limits.

Each rule has a good value that passes and a bad value that fails with one violation naming the field
path and the bound. The bounds in the expected texts are the specs' (or the documented service limits).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from ltx.v1 import endpoints_pb2 as pb
from service.api.endpoints import validate
from service.api.validation import Violation

EXAMPLES = Path(__file__).parents[1] / "data" / "spec_examples"
EXAMPLE_OF_INPUT = {
    pb.TextToVideoInput: "ltx-video-lora.json",
    pb.MulticonditioningInput: "ltx-video-lora-multiconditioning.json",
    pb.DistilledMulticonditioningInput: "ltx-video-13b-distilled-multiconditioning.json",
    pb.ExtendInput: "ltx-video-v097-extend.json",
    pb.Ltx2TextToVideoInput: "ltx-2.3-22b-text-to-video-lora.json",
}

T2V, MULTI, DISTILLED, EXTEND, LTX2 = EXAMPLE_OF_INPUT
IMAGE = "https://example.com/a.jpg"
VIDEO = "https://example.com/a.mp4"
# The smallest valid request of each endpoint; each case adds its fields to it.
MINIMAL: dict[type, dict[str, Any]] = {
    T2V: {"prompt": "a cat"},
    MULTI: {"prompt": "a cat"},
    DISTILLED: {"prompt": "a cat"},
    EXTEND: {"prompt": "a cat", "video": {"video_url": VIDEO}},
    LTX2: {"prompt": "a cat"},
}


def _violations(cls: type, fields: dict[str, Any]) -> list[Violation]:
    message = json_format.ParseDict({**MINIMAL[cls], **fields}, cls())
    return validate(message)


def _cases(
    cls: type, field: str, good: list[Any], bad: list[Any], text: str, path: str | None = None
) -> list:
    """(cls, fields, path, expected text or None) for each good and bad value of one top-level field."""
    path = path or field
    return [(cls, {field: value}, path, None) for value in good] + [
        (cls, {field: value}, path, text) for value in bad
    ]


LTXV_DEV_RULES = [
    *(
        case
        for cls in (T2V, MULTI)
        for case in [
            *_cases(cls, "number_of_frames", [9, 89, 161], [0, 8, 162], "must be between 9 and 161"),
            *_cases(cls, "number_of_steps", [1, 50], [0, 51], "must be between 1 and 50"),
            *_cases(cls, "frame_rate", [1, 60], [0, 61], "must be between 1 and 60"),
            *_cases(cls, "resolution", ["480p", "720p"], ["1080p", ""], "must be one of 480p, 720p;"),
            *_cases(cls, "seed", [0, 2**32 - 1], [-1, 2**32], "must be between 0 and 4294967295"),
            *_cases(cls, "prompt", ["x" * 10_000], ["", "   "], "is required"),
            *_cases(cls, "prompt", [], ["x" * 10_001], "must be at most 10000 characters"),
            *_cases(cls, "negative_prompt", [""], ["x" * 10_001], "must be at most 10000 characters"),
        ]
    ),
    *_cases(T2V, "aspect_ratio", ["16:9", "1:1", "9:16"], ["auto", "4:3"], "must be one of 16:9, 1:1, 9:16;"),
    *_cases(MULTI, "aspect_ratio", ["auto", "9:16"], ["4:3"], "must be one of 16:9, 1:1, 9:16, auto;"),
]

LORA_RULES = [
    *_cases(
        T2V,
        "loras",
        [[{"path": "/models/style.safetensors"}]],
        [[{"path": ""}]],
        "is required",
        "loras[0].path",
    ),
    *_cases(
        MULTI,
        "loras",
        [[{"path": "https://example.com/style.safetensors"}]],
        [[{"path": "ftp://example.com/style.safetensors"}], [{"path": "s3://bucket/lora"}]],
        "must be an http or https URL or a path on the server",
        "loras[0].path",
    ),
    *_cases(
        DISTILLED,
        "loras",
        [[{"path": "/l", "scale": 0}], [{"path": "/l", "scale": 4}]],
        [[{"path": "/l", "scale": -0.5}], [{"path": "/l", "scale": 4.5}]],
        "must be between 0 and 4",
        "loras[0].scale",
    ),
    *_cases(EXTEND, "prompt", [], [""], "is required"),
    *_cases(T2V, "loras", [[{"path": "/l"}] * 5], [[{"path": "/l"}] * 6], "must have at most 5 items"),
    # The LTX-2.3 spec's example sends {"path": ""} for "no LoRA"; any other scheme still fails.
    *_cases(
        LTX2,
        "loras",
        [[{"path": "", "scale": 1}]],
        [[{"path": "ftp://x/l"}]],
        "http or https",
        "loras[0].path",
    ),
]


def _condition(kind: str, start_field: str, **extra: Any) -> dict[str, Any]:
    url_field, url = ("image_url", IMAGE) if kind == "images" else ("video_url", VIDEO)
    return {url_field: url, start_field: extra.pop("start", 0), **extra}


CONDITION_RULES = [
    case
    for cls, start_field, last_frame in (
        (MULTI, "start_frame_number", 88),
        (DISTILLED, "start_frame_num", 120),
    )
    for kind in ("images", "videos")
    for case in [
        *_cases(
            cls,
            kind,
            [[_condition(kind, start_field), _condition(kind, start_field, strength=0)]],
            [[_condition(kind, start_field), _condition(kind, start_field, strength=1.5)]],
            "must be between 0 and 1",
            f"{kind}[1].strength",
        ),
        # The default output length bounds the start frame: 89 frames (multi), 121 (distilled).
        *_cases(
            cls,
            kind,
            [[_condition(kind, start_field, start=last_frame)]],
            [
                [_condition(kind, start_field, start=last_frame + 1)],
                [_condition(kind, start_field, start=-1)],
            ],
            f"must be between 0 and {last_frame}",
            f"{kind}[0].{start_field}",
        ),
    ]
]

URL_RULES = [
    *_cases(
        MULTI,
        "images",
        [[{"image_url": "data:image/png;base64,iVBORw0KGgo="}], [{"image_url": "http://example.com/a.png"}]],
        [[{"image_url": "ftp://example.com/a.png"}], [{"image_url": "example.com/a.png"}]],
        "must be an http, https or data URL",
        "images[0].image_url",
    ),
    *_cases(MULTI, "videos", [], [[{"video_url": ""}]], "is required", "videos[0].video_url"),
    *_cases(DISTILLED, "images", [], [[{"image_url": "data:image/png"}]], "data URI", "images[0].image_url"),
    *_cases(
        MULTI, "images", [[{"image_url": IMAGE}] * 10], [[{"image_url": IMAGE}] * 11], "at most 10 items"
    ),
    *_cases(
        DISTILLED, "videos", [[{"video_url": VIDEO}] * 4], [[{"video_url": VIDEO}] * 5], "at most 4 items"
    ),
]

DISTILLED_RULES = [
    *_cases(DISTILLED, "num_frames", [9, 1441], [8, 1442], "must be between 9 and 1441"),
    *_cases(DISTILLED, "first_pass_num_inference_steps", [2, 12], [1, 13], "must be between 2 and 12"),
    *_cases(DISTILLED, "second_pass_num_inference_steps", [6, 12], [1, 13], "must be between 2 and 12"),
    *_cases(DISTILLED, "second_pass_skip_initial_steps", [1, 7], [0, 12], "must be between 1 and 11"),
    *_cases(DISTILLED, "frame_rate", [1, 60], [0, 61], "must be between 1 and 60"),
    *_cases(DISTILLED, "temporal_adain_factor", [0, 0.5, 1], [-0.05, 1.05], "must be between 0 and 1"),
    *_cases(DISTILLED, "tone_map_compression_ratio", [0, 1], [-0.1, 1.5], "must be between 0 and 1"),
    *_cases(DISTILLED, "constant_rate_factor", [0, 51], [-1, 52], "must be between 0 and 51"),
    *_cases(
        DISTILLED, "aspect_ratio", ["9:16", "1:1", "16:9", "auto"], ["21:9"], "one of 9:16, 1:1, 16:9, auto;"
    ),
    *_cases(
        DISTILLED,
        "videos",
        [[{"video_url": VIDEO, "limit_num_frames": True, "max_num_frames": 1441}]],
        [[{"video_url": VIDEO, "max_num_frames": 0}], [{"video_url": VIDEO, "max_num_frames": 1442}]],
        "must be between 1 and 1441",
        "videos[0].max_num_frames",
    ),
    *_cases(
        DISTILLED,
        "videos",
        [[{"video_url": VIDEO, "resample_fps": True, "target_fps": 60}]],
        [[{"video_url": VIDEO, "target_fps": 0}]],
        "must be between 1 and 60",
        "videos[0].target_fps",
    ),
]

EXTEND_RULES = [
    *_cases(EXTEND, "aspect_ratio", ["9:16", "16:9"], ["1:1", "auto"], "must be one of 9:16, 16:9;"),
    *_cases(EXTEND, "resolution", ["480p"], ["360p"], "must be one of 480p, 720p;"),
    *_cases(EXTEND, "num_inference_steps", [1, 50], [0, 51], "must be between 1 and 50"),
    # The output has 121 frames, so the video can start at frames 0 to 120.
    *_cases(
        EXTEND,
        "video",
        [{"video_url": VIDEO, "start_frame_num": 120}],
        [{"video_url": VIDEO, "start_frame_num": 121}],
        "must be between 0 and 120",
        "video.start_frame_num",
    ),
    *_cases(EXTEND, "video", [], [{"video_url": VIDEO, "strength": 2}], "between 0 and 1", "video.strength"),
    *_cases(EXTEND, "video", [], [{"video_url": "ftp://x/v.mp4"}], "http, https or data", "video.video_url"),
]

LTX2_SCALES = [
    *[(name, 0, 20, 20.5) for name in ("video_cfg_scale", "video_stg_scale", "video_modality_scale")],
    *[(name, 0, 20, 21) for name in ("audio_cfg_scale", "audio_stg_scale", "audio_modality_scale")],
    *[(name, 0, 1, 1.1) for name in ("video_rescaling_scale", "audio_rescaling_scale")],
    ("gradient_estimation_gamma", 0, 10, 11),
    *[
        (n, 0, 4, 5)
        for n in ("camera_lora_scale", "distill_lora_first_pass_scale", "distill_lora_second_pass_scale")
    ],
]
LTX2_ENUMS = {
    "video_size": ["square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"],
    "scheduler": ["ltx2", "linear_quadratic", "beta"],
    "acceleration": ["none", "regular", "high", "full"],
    "camera_lora": [
        "dolly_in",
        "dolly_out",
        "dolly_left",
        "dolly_right",
        "jib_up",
        "jib_down",
        "static",
        "none",
    ],
    "video_output_type": ["X264 (.mp4)", "VP9 (.webm)", "PRORES4444 (.mov)", "GIF (.gif)"],
    "video_quality": ["low", "medium", "high", "maximum"],
    "video_write_mode": ["fast", "balanced", "small"],
}
LTX2_RULES = [
    *_cases(LTX2, "num_frames", [9, 481], [8, 482], "must be between 9 and 481"),
    *_cases(LTX2, "fps", [1, 23.976, 60], [0.5, 61], "must be between 1 and 60"),
    *_cases(LTX2, "num_inference_steps", [1, 50], [0, 51], "must be between 1 and 50"),
    *(
        case
        for name, low, high, bad in LTX2_SCALES
        for case in _cases(LTX2, name, [low, high], [-1, bad], "between")
    ),
    *(
        case
        for name, allowed in LTX2_ENUMS.items()
        for case in _cases(LTX2, name, allowed, ["x"], ", ".join(allowed))
    ),
    *_cases(
        LTX2,
        "image_size",
        [{"width": 64, "height": 2048}, {}],
        [{"width": 63, "height": 512}, {"width": 4096}],
        "must be between 64 and 2048",
        "image_size.width",
    ),
]

RULES = (
    LTXV_DEV_RULES + LORA_RULES + CONDITION_RULES + URL_RULES + DISTILLED_RULES + EXTEND_RULES + LTX2_RULES
)


@pytest.mark.parametrize(("cls", "fields", "path", "text"), RULES)
def test_rule(cls: type, fields: dict[str, Any], path: str, text: str | None) -> None:
    violations = _violations(cls, fields)
    if text is None:
        assert violations == []
    else:
        assert [v.field for v in violations] == [path]
        assert text in violations[0].description


@pytest.mark.parametrize("cls", list(EXAMPLE_OF_INPUT))
def test_spec_full_example_parses_and_validates_clean(cls: type) -> None:
    data = json.loads((EXAMPLES / EXAMPLE_OF_INPUT[cls]).read_text())
    message = json_format.ParseDict(data, cls())
    assert message.prompt == data["prompt"]
    assert validate(message) == []


def test_every_violation_comes_back_at_once() -> None:
    fields = {
        "prompt": "",
        "number_of_frames": 200,
        "aspect_ratio": "4:3",
        "loras": [{"path": "", "scale": 9}],
        "images": [{"image_url": IMAGE}, {"image_url": "ftp://x", "strength": 1.5}],
    }
    violations = _violations(MULTI, fields)
    assert {v.field for v in violations} == {
        "prompt",
        "number_of_frames",
        "aspect_ratio",
        "loras[0].path",
        "loras[0].scale",
        "images[1].image_url",
        "images[1].strength",
    }


def test_descriptions_name_the_bound_and_the_value() -> None:
    (frames,) = _violations(T2V, {"number_of_frames": 200})
    assert frames == Violation("number_of_frames", "must be between 9 and 161, got 200")
    (resolution,) = _violations(T2V, {"resolution": "1080p"})
    assert resolution == Violation("resolution", "must be one of 480p, 720p; got '1080p'")


def test_start_frame_bound_follows_the_requested_frame_count() -> None:
    image = {"image_url": IMAGE, "start_frame_number": 150}
    assert _violations(MULTI, {"number_of_frames": 161, "images": [image]}) == []
    (violation,) = _violations(MULTI, {"number_of_frames": 121, "images": [image]})
    assert violation.field == "images[0].start_frame_number"
    assert "between 0 and 120" in violation.description


def test_second_pass_must_keep_at_least_one_step() -> None:
    fields = {"second_pass_num_inference_steps": 4, "second_pass_skip_initial_steps": 4}
    (violation,) = _violations(DISTILLED, fields)
    assert violation.field == "second_pass_skip_initial_steps"
    assert "less than second_pass_num_inference_steps (4)" in violation.description
    # with the defaults (8 steps) the spec's maximum skip of 11 is too many
    assert [v.field for v in _violations(DISTILLED, {"second_pass_skip_initial_steps": 11})] == [
        "second_pass_skip_initial_steps"
    ]


def test_extend_requires_the_video() -> None:
    message = pb.ExtendInput(prompt="a cat")
    assert validate(message) == [Violation("video", "is required")]


def test_nan_is_out_of_every_range() -> None:
    message = pb.DistilledMulticonditioningInput(prompt="a cat", temporal_adain_factor=float("nan"))
    assert [v.field for v in validate(message)] == ["temporal_adain_factor"]


def test_a_rejected_data_uri_is_not_echoed_whole() -> None:
    url = "gopher://" + "A" * 5000
    (violation,) = _violations(MULTI, {"images": [{"image_url": url}]})
    assert len(violation.description) < 200


def test_other_messages_are_refused() -> None:
    with pytest.raises(TypeError, match="TextToVideoOutput"):
        validate(pb.TextToVideoOutput())
