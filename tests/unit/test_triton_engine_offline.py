"""TritonEngine without a server: errors, readiness and endpoint support."""

from __future__ import annotations

import time
from typing import Self

import pytest

from service.config import ServiceConfig
from service.contract.pipeline import error_message_for, exception_from_message
from service.domain.errors import Cancelled, ErrorType, JobError, RunnerUnavailable
from service.domain.job_context import JobContext
from service.domain.specs import Endpoint, TextToVideoSpec
from service.engines import triton as triton_module
from service.engines.endpoint_pipelines import EndpointInputs
from service.engines.triton import TritonEngine
from service.engines.tritonserver_process import free_port

SPEC = TextToVideoSpec(
    prompt="p",
    negative_prompt="n",
    width=64,
    height=64,
    num_frames=9,
    num_inference_steps=2,
    frame_rate=24,
    seed=1,
)


@pytest.mark.parametrize(
    ("raised", "expected_type", "error_type"),
    [
        (Cancelled(), Cancelled, ErrorType.CANCELLED),
        (JobError(ErrorType.LORA_LOAD_FAILED, "no such LoRA"), JobError, ErrorType.LORA_LOAD_FAILED),
        (RunnerUnavailable("component model gone"), RunnerUnavailable, ErrorType.RUNNER_UNAVAILABLE),
    ],
)
def test_job_errors_survive_the_trip_through_triton(
    raised: JobError, expected_type: type, error_type: ErrorType
) -> None:
    rebuilt = exception_from_message(error_message_for(raised))
    assert type(rebuilt) is expected_type
    assert (
        isinstance(rebuilt, JobError)
        and rebuilt.error_type is error_type
        and rebuilt.message == raised.message
    )


@pytest.mark.parametrize("text", [error_message_for(KeyError("boom")), "Stub process is not healthy", ""])
def test_other_model_errors_are_bugs_not_job_errors(text: str) -> None:
    rebuilt = exception_from_message(text)
    assert type(rebuilt) is RuntimeError


def test_unreachable_triton_fails_fast_with_runner_unavailable() -> None:
    engine = TritonEngine(ServiceConfig(triton_url=f"127.0.0.1:{free_port()}"), connect_timeout_s=2.0)
    started = time.monotonic()

    with pytest.raises(RunnerUnavailable, match=r"127.0.0.1"):
        engine.generate(EndpointInputs(SPEC), (), JobContext.create())

    assert time.monotonic() - started < 10
    assert engine.ready() is False


def test_supports_what_ltx_pipeline_can_run_until_triton_answers() -> None:
    # Nothing listens here: the repository is unknown, so every endpoint ltx_pipeline can run is accepted
    # (such jobs fail as runner_unavailable while Triton is down), and the others never are.
    engine = TritonEngine(ServiceConfig(triton_url=f"127.0.0.1:{free_port()}"), connect_timeout_s=1.0)
    assert engine.supports(Endpoint.TEXT_TO_VIDEO)
    assert engine.supports(Endpoint.EXTEND)
    assert engine.supports(Endpoint.LTX2_TEXT_TO_VIDEO)  # ltx_pipeline runs LTX-2.3 too
    assert not engine.supports("no-such-endpoint")


def test_camera_loras_are_refused_at_submit_on_triton() -> None:
    # The component models keep only the distilled LoRA: a camera LoRA is FAILED_PRECONDITION naming it.
    import dataclasses

    from service.domain.specs import CameraLora
    from tests.unit.test_ltx2_pipeline import BASE

    engine = TritonEngine(ServiceConfig(triton_url=f"127.0.0.1:{free_port()}"), connect_timeout_s=1.0)
    assert engine.precondition_failure(BASE) is None
    failure = engine.precondition_failure(dataclasses.replace(BASE, camera_lora=CameraLora.DOLLY_IN))
    assert failure is not None and "camera_lora" in failure and "dolly_in" in failure


class _FakeTritonClient:
    """Answers like tritonclient's gRPC client for a ready server whose ltx_pipeline config names
    `components` (None: no such parameter)."""

    components: str | None = None

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def is_server_ready(self, client_timeout: float) -> bool:
        return True

    def is_model_ready(self, name: str, client_timeout: float) -> bool:
        return True

    def get_model_config(self, name: str, as_json: bool, client_timeout: float) -> dict[str, object]:
        parameters = {} if self.components is None else {"components": {"string_value": self.components}}
        return {"config": {"name": name, "parameters": parameters}}


def test_supports_what_the_connected_repository_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(triton_module.grpcclient, "InferenceServerClient", _FakeTritonClient)
    monkeypatch.setattr(_FakeTritonClient, "components", "text_encoder,transformer,vae_decoder,vae_encoder")
    engine = TritonEngine(ServiceConfig(), ready_cache_s=0.0)

    assert engine.ready()  # the health loop's probe (off the event loop) learns the served endpoints
    assert engine.supports(Endpoint.MULTICONDITIONING) and engine.supports(Endpoint.EXTEND)
    assert not engine.supports(Endpoint.DISTILLED_MULTICONDITIONING)  # no latent_upsampler model

    monkeypatch.setattr(_FakeTritonClient, "components", None)  # a repository from before the parameter
    assert engine.ready()
    assert not engine.supports(Endpoint.TEXT_TO_VIDEO)


def test_supports_never_reaches_out_to_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    """Submit calls `supports` on the event loop: it must answer from what `ready` learnt, never probe."""

    def no_network(url: str) -> None:
        raise AssertionError(f"supports() opened a connection to {url}")

    engine = TritonEngine(ServiceConfig(), ready_cache_s=0.0)
    monkeypatch.setattr(triton_module.grpcclient, "InferenceServerClient", no_network)
    assert engine.supports(Endpoint.TEXT_TO_VIDEO)  # nothing learnt yet: what ltx_pipeline can run
