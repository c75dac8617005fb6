"""Which endpoints a set of components serves (both engines answer `supports` from this)."""

from __future__ import annotations

import dataclasses

from service.config import ModelConfig
from service.domain.specs import Endpoint
from service.engines.endpoint_pipelines import PIPELINE_SUPPORTED, endpoints_served, served_endpoints
from service.engines.torch_bindings import load_components


def test_endpoints_follow_the_optional_components() -> None:
    full = load_components(ModelConfig())
    no_upsampler = dataclasses.replace(full, upsampler=None)
    no_encoder = dataclasses.replace(full, vae_encoder=None)

    # LTX-Video's components serve its four endpoints; LTX-2.3 has component models of its own.
    assert endpoints_served(full) == PIPELINE_SUPPORTED - {Endpoint.LTX2_TEXT_TO_VIDEO}
    assert endpoints_served(no_upsampler) == {
        Endpoint.TEXT_TO_VIDEO,
        Endpoint.MULTICONDITIONING,
        Endpoint.EXTEND,
    }
    assert endpoints_served(no_encoder) == {Endpoint.TEXT_TO_VIDEO}


def test_triton_repository_rule_agrees_with_the_components_rule() -> None:
    # The same endpoints for a repository with these component models as for components bound to them.
    full = load_components(ModelConfig())
    names = "text_encoder,transformer,vae_decoder,vae_encoder"
    assert served_endpoints(names) == endpoints_served(dataclasses.replace(full, upsampler=None))


def test_ltx2_is_served_by_its_own_component_models() -> None:
    ltx2 = "ltx2_text_encoder,ltx2_transformer,ltx2_vae_decoder,ltx2_audio_decoder,ltx2_latent_upsampler"
    assert served_endpoints(ltx2) == {Endpoint.LTX2_TEXT_TO_VIDEO}
    assert served_endpoints(ltx2.replace(",ltx2_audio_decoder", "")) == frozenset()
    everything = f"text_encoder,transformer,vae_decoder,vae_encoder,latent_upsampler,{ltx2}"
    assert served_endpoints(everything) == PIPELINE_SUPPORTED
