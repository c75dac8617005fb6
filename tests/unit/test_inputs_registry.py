"""The inputs layer's endpoint registry: every endpoint has one `InputEndpoint`, and the prepare stage
dispatches through it (adding an endpoint is one entry there)."""

from __future__ import annotations

import pytest

from service.api.endpoints import API_ENDPOINTS
from service.domain.progress import ProgressCallback
from service.domain.specs import Endpoint, Spec, TextToVideoSpec
from service.inputs import endpoints, prepare_endpoint_inputs
from service.inputs.endpoints import INPUT_ENDPOINTS, InputEndpoint, input_endpoint
from service.media.fetch import FetchLimits
from service.pipelines.endpoint_inputs import EndpointInputs
from service.safety.checker import SafetyChecker

SPEC = TextToVideoSpec("a cat", "", 64, 64, 9, 2, 24, seed=1)


def test_every_endpoint_has_exactly_one_input_preparation() -> None:
    endpoints = [entry.endpoint for entry in INPUT_ENDPOINTS]
    assert len(endpoints) == len(set(endpoints))
    assert set(endpoints) == set(Endpoint) == {entry.endpoint for entry in API_ENDPOINTS}


def test_prepare_dispatches_to_the_endpoints_preparer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    entry = input_endpoint(Endpoint.TEXT_TO_VIDEO)

    def recording(
        spec: Spec, limits: FetchLimits, checker: SafetyChecker | None, on_progress: ProgressCallback
    ) -> EndpointInputs:
        calls.append(spec)
        return entry.prepare_media(spec, limits, checker, on_progress)

    patched = {
        **endpoints._BY_ENDPOINT,
        Endpoint.TEXT_TO_VIDEO: InputEndpoint(Endpoint.TEXT_TO_VIDEO, recording),
    }
    monkeypatch.setattr(endpoints, "_BY_ENDPOINT", patched)
    inputs = prepare_endpoint_inputs(SPEC, FetchLimits(), None, lambda _p: None)
    assert calls == [SPEC] and inputs.spec is SPEC and inputs.media == () and inputs.kept_pixels is None


def test_a_preparer_refuses_another_endpoints_spec() -> None:
    with pytest.raises(TypeError, match="extend spec expected"):
        input_endpoint(Endpoint.EXTEND).prepare_media(SPEC, FetchLimits(), None, lambda _p: None)


def test_only_ltx2_expands_its_prompt_outside_the_prepare_stage() -> None:
    assert {entry.endpoint for entry in INPUT_ENDPOINTS if not entry.expands_prompt} == {
        Endpoint.LTX2_TEXT_TO_VIDEO
    }
