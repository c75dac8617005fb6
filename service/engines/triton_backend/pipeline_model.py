"""`ltx_pipeline`: a decoupled Triton Python model that runs the project's pipelines on BLS components.

One request per job (tensor names in service/contract/pipeline.py): the endpoint id, the spec as
JSON and, for the conditioned endpoints, the media the service decoded (conditioning_tensors). The model
runs the endpoint's pipeline (`run_endpoint`, what LocalEngine runs), streams a progress response per
pipeline stage and denoising step, checks the request's cancellation between steps (the pipeline raises
Cancelled), and ends every request with the FINAL flag: on the result, or on a TritonError that fails that
request alone.

config.pbtxt parameters: `components`, the repository's component models (which endpoints are served);
the ModelConfig fields (preset, seed, dtype, model_dir, ...) say which model the tiny/real assets come
from; `assets_dir` (relative to the version directory) holds exported assets instead; `device` is where
the pipeline keeps its latents (cpu, or cuda next to TensorRT models).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils  # only importable inside a Triton Python-backend stub

from service.contract import pipeline as contract
from service.domain.context import JobContext
from service.domain.errors import Cancelled, ErrorType, JobError
from service.domain.outputs import GeneratedVideo
from service.domain.progress import Progress
from service.domain.specs import Endpoint, Spec, spec_from_json
from service.engines.conditioning_tensors import kept_from_arrays, media_from_arrays
from service.engines.endpoints import EndpointInputs, pipeline_endpoint, run_endpoint, served_endpoints
from service.engines.triton_backend.bls import bls_components
from service.engines.triton_backend.params import (
    model_config_from,
    model_parameters,
    resolve_path,
    version_dir,
)
from service.logs import request_scope
from service.models.assets import assets_from_models, load_assets

log = logging.getLogger("ltx_pipeline")

NO_LORA = "LoRAs are not supported by the Triton engine yet (TensorRT plans are built without adapters)"


class PipelineModel:
    def initialize(self, args: dict[str, str]) -> None:
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        parameters = model_parameters(args)
        assets_dir = resolve_path(parameters, "assets_dir", version_dir(args))
        model_config = model_config_from(parameters)
        assets = load_assets(assets_dir) if assets_dir else assets_from_models(model_config)
        device = torch.device(parameters.get("device") or "cpu")
        names = parameters.get(contract.COMPONENTS_PARAMETER, "")
        component_names = frozenset(name.strip() for name in names.split(",") if name.strip())
        self.components = bls_components(assets, device, component_names)
        self.served = served_endpoints(component_names)
        log.info(
            "ltx_pipeline ready: preset %s, assets %s, device %s, endpoints %s",
            model_config.preset,
            assets_dir,
            device,
            ", ".join(sorted(self.served)),
        )

    def execute(self, requests: list[Any]) -> None:
        # Decoupled: every response goes through the request's sender, and execute returns None.
        for request in requests:
            self._serve(request)

    def finalize(self) -> None:
        log.info("ltx_pipeline unloaded")

    def _serve(self, request: Any) -> None:
        """Run one request to its FINAL response; its failure is its own (the others go on)."""
        sender = request.get_response_sender()
        request_id = request.request_id() or "unnamed"  # the service sends the job's request id
        with request_scope(request_id):
            self._serve_in_scope(request, sender, request_id)

    def _serve_in_scope(self, request: Any, sender: Any, request_id: str) -> None:
        try:
            inputs = _read_inputs(request, self.served)
            log.info("request %s: %s", request_id, inputs.spec.endpoint)

            def on_progress(progress: Progress) -> None:
                sender.send(_progress_response(progress))

            video = self._generate(inputs, JobContext(request_id, on_progress, request.is_cancelled))
            sender.send(_result_response(video), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            log.info("request %s: done, %d frames", request_id, len(video.frames))
        except Exception as exc:  # any failure ends this request, never the model
            if isinstance(exc, JobError | BadRequest):  # expected outcomes, not bugs: no traceback
                log.info("request %s: %s", request_id, exc)
            else:
                log.exception("request %s failed", request_id)
            _send_final_error(sender, exc, request_id)

    def _generate(self, inputs: EndpointInputs[Spec], ctx: JobContext) -> GeneratedVideo:
        # Prompt expansion, media fetching and the safety checks run in the service (TritonEngine).
        if getattr(inputs.spec, "loras", ()):
            raise JobError(ErrorType.LORA_LOAD_FAILED, NO_LORA)
        return run_endpoint(self.components, inputs, ctx)


class BadRequest(ValueError):
    """The request's tensors are not a served endpoint, its spec and its media (a client bug, not a job
    error)."""


def _read_inputs(request: Any, served: frozenset[Endpoint]) -> EndpointInputs[Spec]:
    try:
        endpoint = _text_input(request, contract.ENDPOINT)
        spec = spec_from_json(endpoint, _text_input(request, contract.SPEC_JSON))
    except Exception as exc:
        raise BadRequest(f"{contract.ENDPOINT}/{contract.SPEC_JSON}: {exc}") from exc
    if spec.endpoint not in served:
        raise BadRequest(f"{contract.PIPELINE_MODEL} does not serve endpoint {spec.endpoint} in this repository")
    arrays = {}
    for name in (*contract.CONDITION_INPUTS, contract.KEPT_FRAMES):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is not None:
            arrays[name] = tensor.as_numpy().copy()  # the buffer is the request's shared memory
    try:
        media = media_from_arrays(arrays)
        takes_kept = pipeline_endpoint(spec.endpoint).takes_kept_frames
        kept = kept_from_arrays(arrays, spec.width, spec.height) if takes_kept else None
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    return EndpointInputs(spec, media=media, kept_pixels=kept)


def _text_input(request: Any, name: str) -> str:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"missing input {name}")
    value = tensor.as_numpy().reshape(-1)[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(text: str) -> np.ndarray:
    return np.array([text.encode()], dtype=np.object_)


def _progress_response(progress: Progress) -> Any:
    return pb_utils.InferenceResponse(
        output_tensors=[
            pb_utils.Tensor(contract.STAGE, _bytes(progress.stage.value)),
            pb_utils.Tensor(contract.STEP, np.array([progress.step], dtype=np.int32)),
            pb_utils.Tensor(contract.TOTAL, np.array([progress.total], dtype=np.int32)),
            pb_utils.Tensor(contract.MESSAGE, _bytes(progress.message)),
        ]
    )


def _result_response(video: GeneratedVideo) -> Any:
    return pb_utils.InferenceResponse(
        output_tensors=[
            pb_utils.Tensor(contract.FRAMES, np.ascontiguousarray(video.frames, dtype=np.uint8)),
            pb_utils.Tensor(contract.FRAME_RATE, np.array([video.frame_rate], dtype=np.float32)),
            pb_utils.Tensor(contract.SEED, np.array([video.seed], dtype=np.int64)),
            pb_utils.Tensor(contract.PROMPT, _bytes(video.prompt)),
        ]
    )


def _send_final_error(sender: Any, exc: Exception, request_id: str) -> None:
    try:
        response = pb_utils.InferenceResponse(error=_triton_error(exc))
        sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    except Exception:  # e.g. the client's stream is gone; the request is over either way
        log.warning("request %s: could not send its final error response", request_id, exc_info=True)


def _triton_error(exc: Exception) -> Any:
    """A TritonError whose text the client turns back into the job error (service/contract/pipeline.py)."""
    codes = pb_utils.TritonError
    if isinstance(exc, Cancelled):
        code = getattr(codes, "CANCELLED", codes.INTERNAL)
    elif isinstance(exc, BadRequest):
        code = codes.INVALID_ARG
    else:
        code = codes.INTERNAL
    return pb_utils.TritonError(contract.error_message_for(exc), code)
