"""Randomised requests: validation either names violations or the request converts; nothing crashes.

A crash here would surface as INTERNAL at Submit, which a client mistake must never get. Each case mutates
a spec's Full Example: a few fields at a time get values from pools of good, bad and odd values (NaN,
negatives, huge numbers, empty and unknown strings), nested conditions and LoRAs included.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor

from service.api.endpoints import API_ENDPOINTS, input_from_json, to_spec, validate
from service.domain.specs import spec_from_json, spec_to_json

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "spec_examples"
CASES_PER_ENDPOINT = 2000

INTS = [-(2**40), -1, 0, 1, 8, 9, 24, 89, 120, 161, 257, 1441, 1442, 2**31 - 1, 2**40]
FLOATS = [-1.0, 0.0, 0.05, 0.5, 1.0, 1.5, 4.0, 25.0, 1e12, math.nan, math.inf, -math.inf]
STRINGS = [
    "",
    "x",
    "480p",
    "720p",
    "1080p",
    "16:9",
    "9:16",
    "1:1",
    "auto",
    "4:3",
    "landscape_16_9",
    "http://example.com/a.jpg",
    "ftp://example.com/a.jpg",
    "data:image/png;base64,AAAA",
    "\u0000",
]


def _mutations(message: Any, rng: random.Random, depth: int = 0) -> None:
    for field in message.DESCRIPTOR.fields:
        if rng.random() > 0.3:
            continue
        repeated = field.is_repeated
        if field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            children = getattr(message, field.name)
            targets = list(children) if repeated else [children]
            if repeated and rng.random() < 0.3:
                targets.append(children.add())
            for child in targets:
                if depth < 2:
                    _mutations(child, rng, depth + 1)
            continue
        value = _value_for(field, rng)
        if value is None:
            continue
        try:
            if repeated:
                getattr(message, field.name).append(value)
            else:
                setattr(message, field.name, value)
        except (ValueError, TypeError):
            pass  # out of the proto type's own range: protobuf refuses it before we ever see it


def _value_for(field: descriptor.FieldDescriptor, rng: random.Random) -> Any:
    kind = field.type
    if kind == descriptor.FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if kind == descriptor.FieldDescriptor.TYPE_STRING:
        return rng.choice(STRINGS)
    if kind in (descriptor.FieldDescriptor.TYPE_DOUBLE, descriptor.FieldDescriptor.TYPE_FLOAT):
        return rng.choice(FLOATS)
    if kind in (descriptor.FieldDescriptor.TYPE_INT32, descriptor.FieldDescriptor.TYPE_INT64,
                descriptor.FieldDescriptor.TYPE_UINT32, descriptor.FieldDescriptor.TYPE_UINT64):  # fmt: skip
        return rng.choice(INTS)
    return None


@pytest.mark.parametrize(
    "example", sorted(p.stem for p in EXAMPLES.glob("*.json") if ".output" not in p.stem)
)
def test_random_requests_are_refused_with_violations_or_convert(example: str) -> None:
    data = json.loads((EXAMPLES / f"{example}.json").read_text())
    endpoint = next(a.endpoint for a in API_ENDPOINTS if a.endpoint.value.replace("/", "-") == example)
    rng = random.Random(example)
    accepted = refused = 0
    for _ in range(CASES_PER_ENDPOINT):
        message = input_from_json(endpoint.value, data)
        _mutations(message, rng)
        violations = validate(message)
        if violations:
            refused += 1
            assert all(v.field and v.description for v in violations)
            continue
        accepted += 1
        spec = to_spec(message, rng=random.Random(0))
        assert spec_from_json(endpoint, spec_to_json(spec)) == spec
    assert accepted and refused  # the pools reach both outcomes, so both paths were exercised
