"""The endpoint registry: one descriptor per endpoint in each layer, consistent with the proto and domain."""

from __future__ import annotations

import pytest

from ltx.v1 import video_generation_pb2 as pb
from service.api.endpoints import API_ENDPOINTS, api_endpoint
from service.contract.components import COMPONENT_DECLS
from service.contract.ltx2_components import LTX2_COMPONENT_DECLS
from service.domain.specs import SPEC_TYPES, Endpoint
from service.engines.endpoint_pipelines import PIPELINE_ENDPOINTS, pipeline_endpoint, served_endpoints


def test_every_endpoint_has_one_api_descriptor() -> None:
    assert sorted(entry.endpoint for entry in API_ENDPOINTS) == sorted(Endpoint)
    assert len({entry.input_type for entry in API_ENDPOINTS}) == len(API_ENDPOINTS)


@pytest.mark.parametrize("oneof", ["input", "output"])
def test_oneof_fields_carry_the_descriptors_messages(oneof: str) -> None:
    container = pb.GenerationInput if oneof == "input" else pb.GenerationOutput
    fields = {}
    for field in container.DESCRIPTOR.oneofs_by_name[oneof].fields:
        assert field.message_type is not None
        fields[field.name] = field.message_type.full_name
    declared = {
        entry.oneof_field: (entry.input_type if oneof == "input" else entry.output_type).DESCRIPTOR.full_name
        for entry in API_ENDPOINTS
    }
    assert declared == fields


def test_pipeline_descriptors_match_the_domain_and_the_contract() -> None:
    for entry in PIPELINE_ENDPOINTS:
        assert entry.spec_type is SPEC_TYPES[entry.endpoint]
        assert entry.components <= set(COMPONENT_DECLS) | set(LTX2_COMPONENT_DECLS), entry.endpoint
    assert [e.endpoint for e in PIPELINE_ENDPOINTS if e.takes_kept_frames] == [Endpoint.EXTEND]


def test_served_endpoints_follow_the_components() -> None:
    assert served_endpoints("text_encoder, transformer, vae_decoder") == {Endpoint.TEXT_TO_VIDEO}
    ltx_video = served_endpoints(list(COMPONENT_DECLS))
    assert Endpoint.LTX2_TEXT_TO_VIDEO not in ltx_video  # LTX-2.3 needs its own component models
    everything = served_endpoints([*COMPONENT_DECLS, *LTX2_COMPONENT_DECLS])
    assert everything == {entry.endpoint for entry in PIPELINE_ENDPOINTS} == set(Endpoint)
    assert served_endpoints([]) == frozenset()


def test_unknown_and_unrun_endpoints_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="no-such-endpoint"):
        api_endpoint("no-such-endpoint")
    assert api_endpoint("fal-ai/ltx-video-lora").endpoint is Endpoint.TEXT_TO_VIDEO
    with pytest.raises(ValueError, match="no-such-endpoint"):
        pipeline_endpoint("no-such-endpoint")
    assert pipeline_endpoint(Endpoint.LTX2_TEXT_TO_VIDEO).endpoint is Endpoint.LTX2_TEXT_TO_VIDEO
