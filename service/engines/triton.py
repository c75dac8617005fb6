"""`TritonEngine`: runs a spec on the decoupled Triton model `ltx_pipeline` over gRPC streaming.

The job frame (prompt expansion, safety checks) and the conditioning media (fetch, decode, check: the
same `prepare_endpoint_inputs` LocalEngine runs) stay in this process. One stream per job: the request
carries the endpoint id, the spec as JSON and the decoded media as tensors (conditioning_tensors); the
model answers with a progress response per pipeline stage and denoising step, then the frames with the
FINAL flag. Cancelling the job cancels the stream, which Triton turns into `request.is_cancelled()` inside
the model.

Which endpoints are served depends on the repository's component models: `ltx_pipeline`'s config names
them (contract.pipeline.COMPONENTS_PARAMETER), and `supports` answers from it once Triton has been reached.

Triton being down never hangs a job: connecting has a short timeout, and a stream that stays silent for
longer than `response_timeout_s` (no progress, no result) is treated as a lost backend.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from service.config import ServiceConfig
from service.contract import pipeline as contract
from service.domain.errors import Cancelled, RunnerUnavailable
from service.domain.outputs import GeneratedVideo
from service.domain.progress import CancelCheck, Progress, ProgressCallback, Stage
from service.domain.specs import Endpoint, spec_to_json
from service.engines.conditioning_tensors import kept_to_arrays, media_to_arrays
from service.engines.endpoint_pipelines import EndpointInputs, prepare_endpoint_inputs
from service.engines.job_frame import JobFrame

log = logging.getLogger(__name__)

# A stream error with one of these gRPC statuses means the server went away (killed, restarted, network),
# not that the job is bad; other errors carry the model's own message (service/contract/pipeline.py).
_LOST_BACKEND_STATUSES = frozenset(
    {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED"}
)

StreamEvent = tuple[Any, InferenceServerException | None]  # (InferResult | None, error | None)


class TritonEngine:
    """The Engine Protocol over Triton's `ltx_pipeline` (see module docstring)."""

    supports_loras = False  # the TensorRT plans are built without adapters: Submit refuses LoRAs up front

    def __init__(
        self,
        config: ServiceConfig,
        *,
        connect_timeout_s: float = 5.0,
        response_timeout_s: float = 600.0,
        ready_cache_s: float = 1.5,
        poll_interval_s: float = 0.1,
    ) -> None:
        self._url = config.triton_url
        self._connect_timeout_s = connect_timeout_s
        # A real 13B step on a slow GPU takes seconds; ten minutes of silence means a wedged server.
        self._response_timeout_s = response_timeout_s
        self._ready_cache_s = ready_cache_s
        self._poll_interval_s = poll_interval_s  # how often a waiting job looks at its cancel flag
        self._frame = JobFrame(config)  # prompt expansion and the safety check run in this process
        self._media_limits = config.media
        self._ready_lock = threading.Lock()
        self._ready_checked_at = -float("inf")
        self._ready_answer = False
        self._served: frozenset[Endpoint] | None = None  # from ltx_pipeline's config, once Triton answered

    def supports(self, endpoint: Endpoint | str) -> bool:
        """Whether the connected repository serves `endpoint`. Until Triton has answered once, every
        endpoint `ltx_pipeline` can run counts as served: such jobs queue and fail as runner_unavailable
        while Triton is down, as text to video always did."""
        try:
            endpoint = Endpoint(endpoint)
        except ValueError:
            return False
        if endpoint not in contract.SUPPORTED_ENDPOINTS:
            return False
        if self._served is None:
            self.ready()  # learns the served endpoints when Triton is up (cached for ready_cache_s)
        return self._served is None or endpoint in self._served

    def ready(self) -> bool:
        """Triton is reachable and `ltx_pipeline` is ready; the answer is cached for `ready_cache_s`."""
        with self._ready_lock:
            now = time.monotonic()
            if now - self._ready_checked_at >= self._ready_cache_s:
                self._ready_answer = self._probe_ready()
                self._ready_checked_at = time.monotonic()
            return self._ready_answer

    def generate(self, spec: Any, on_progress: ProgressCallback, is_cancelled: CancelCheck) -> GeneratedVideo:
        """The job frame the in-process engine has (prompt expansion, safety check of the output) around
        the pipeline, which runs in Triton."""
        if not self.supports(spec.endpoint):
            # The API checks `supports` before queueing, so getting here is a bug, not a client mistake.
            raise ValueError(f"{contract.PIPELINE_MODEL} does not serve endpoint {spec.endpoint}")
        spec, checker = self._frame.prepare(spec, on_progress)
        inputs = prepare_endpoint_inputs(spec, self._media_limits, checker, on_progress)
        video = self._run_pipeline(inputs, on_progress, is_cancelled)
        self._frame.check_output(video, checker, on_progress)
        return video

    def _run_pipeline(
        self, inputs: EndpointInputs, on_progress: ProgressCallback, is_cancelled: CancelCheck
    ) -> GeneratedVideo:
        """One `ltx_pipeline` request over a gRPC stream of its own."""
        if is_cancelled():
            raise Cancelled()
        spec = inputs.spec
        events: queue.Queue[StreamEvent] = queue.Queue()
        client = grpcclient.InferenceServerClient(self._url)
        request_id = uuid.uuid4().hex
        try:
            self._require_pipeline_ready(client)
            client.start_stream(callback=lambda result, error: events.put((result, error)))
            client.async_stream_infer(
                contract.PIPELINE_MODEL,
                _request_inputs(inputs),
                request_id=request_id,
                enable_empty_final_response=True,
            )
            log.info("triton request %s started (%s)", request_id, spec.endpoint)
            return self._collect(events, on_progress, is_cancelled, request_id)
        except InferenceServerException as exc:
            raise RunnerUnavailable(f"Triton at {self._url} failed: {exc.message()}") from exc
        finally:
            # Cancels the request if it is still running (cancel, error, timeout); a no-op once it ended.
            client.stop_stream(cancel_requests=True)
            client.close()

    def _collect(
        self,
        events: queue.Queue[StreamEvent],
        on_progress: ProgressCallback,
        is_cancelled: CancelCheck,
        request_id: str,
    ) -> GeneratedVideo:
        """Relay progress until the final response; return its video or raise the job's error."""
        video: GeneratedVideo | None = None
        silent_since = time.monotonic()
        while True:
            if is_cancelled():
                log.info("triton request %s cancelled by the client", request_id)
                raise Cancelled()
            try:
                result, error = events.get(timeout=self._poll_interval_s)
            except queue.Empty:
                if time.monotonic() - silent_since > self._response_timeout_s:
                    raise RunnerUnavailable(
                        f"Triton at {self._url} sent nothing for {self._response_timeout_s:.0f} s"
                    ) from None
                continue
            silent_since = time.monotonic()
            if error is not None:
                raise self._error_from_stream(error)
            progress = _progress_of(result)
            if progress is not None:
                on_progress(progress)
            video = _video_of(result) or video
            if _is_final(result):
                if video is None:
                    raise RuntimeError(f"{contract.PIPELINE_MODEL} ended request {request_id} without frames")
                return video

    def _error_from_stream(self, error: InferenceServerException) -> Exception:
        if error.status() in _LOST_BACKEND_STATUSES:
            return RunnerUnavailable(f"lost the connection to Triton at {self._url}: {error.message()}")
        return contract.exception_from_message(error.message() or str(error))

    def _require_pipeline_ready(self, client: grpcclient.InferenceServerClient) -> None:
        try:
            model_ready = client.is_model_ready(
                contract.PIPELINE_MODEL, client_timeout=self._connect_timeout_s
            )
        except InferenceServerException as exc:
            raise RunnerUnavailable(f"Triton at {self._url} is unreachable: {exc.message()}") from exc
        if not model_ready:
            raise RunnerUnavailable(f"Triton at {self._url} is up but {contract.PIPELINE_MODEL} is not ready")

    def _probe_ready(self) -> bool:
        try:
            with grpcclient.InferenceServerClient(self._url) as client:
                timeout = self._connect_timeout_s
                ready = bool(
                    client.is_server_ready(client_timeout=timeout)
                    and client.is_model_ready(contract.PIPELINE_MODEL, client_timeout=timeout)
                )
                if ready:
                    self._served = served_by_repository(client, timeout)
                return ready
        except InferenceServerException as exc:
            log.debug("Triton at %s not ready: %s", self._url, exc.message())
            return False


def served_by_repository(client: grpcclient.InferenceServerClient, timeout_s: float) -> frozenset[Endpoint]:
    """The endpoints of the repository behind `client`, from `ltx_pipeline`'s config parameters."""
    config = client.get_model_config(contract.PIPELINE_MODEL, as_json=True, client_timeout=timeout_s)
    parameters = config.get("config", {}).get("parameters", {})
    names = parameters.get(contract.COMPONENTS_PARAMETER, {}).get("string_value", "")
    served = contract.served_endpoints(names)
    if not served:
        # E.g. a repository generated before its component models carried STG inputs and this parameter.
        log.warning(
            "%s's config names no usable components (parameter %r: %r); regenerate the repository with "
            "`python -m export`",
            contract.PIPELINE_MODEL,
            contract.COMPONENTS_PARAMETER,
            names,
        )
    return served


def _request_inputs(inputs: EndpointInputs) -> list[grpcclient.InferInput]:
    spec = inputs.spec
    tensors = []
    for name, text in ((contract.ENDPOINT, str(spec.endpoint)), (contract.SPEC_JSON, spec_to_json(spec))):
        tensor = grpcclient.InferInput(name, [1], "BYTES")
        tensor.set_data_from_numpy(np.array([text.encode()], dtype=np.object_))
        tensors.append(tensor)
    arrays = media_to_arrays(inputs.media)
    if inputs.kept_pixels is not None:
        arrays.update(kept_to_arrays(inputs.kept_pixels))
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def _progress_of(result: Any) -> Progress | None:
    stage = result.as_numpy(contract.STAGE)
    if stage is None:
        return None
    message = result.as_numpy(contract.MESSAGE)
    return Progress(
        stage=Stage(_text(stage)),
        step=int(result.as_numpy(contract.STEP)[0]),
        total=int(result.as_numpy(contract.TOTAL)[0]),
        message=_text(message) if message is not None else "",
    )


def _video_of(result: Any) -> GeneratedVideo | None:
    frames = result.as_numpy(contract.FRAMES)
    if frames is None:
        return None
    return GeneratedVideo(
        frames=np.ascontiguousarray(frames, dtype=np.uint8),
        frame_rate=float(result.as_numpy(contract.FRAME_RATE)[0]),
        seed=int(result.as_numpy(contract.SEED)[0]),
        prompt=_text(result.as_numpy(contract.PROMPT)),
    )


def _is_final(result: Any) -> bool:
    parameters = result.get_response().parameters
    return "triton_final_response" in parameters and parameters["triton_final_response"].bool_param


def _text(array: np.ndarray) -> str:
    value = array.reshape(-1)[0]
    return value.decode() if isinstance(value, bytes) else str(value)
