"""`TritonEngine`: runs a spec on the decoupled Triton model `ltx_pipeline` over gRPC streaming.

The generate stage only: prompt expansion, the conditioning media (fetch, decode, check) and the output's
safety check and encode run in this process, in the prepare and finish stages (service/inputs/,
service/jobs/), as with LocalEngine. One stream per job: the request
carries the endpoint id, the spec as JSON and the decoded media as tensors (conditioning_tensors); the
model answers at once (accepted), then with heartbeats while the request lives, a progress response per
pipeline stage and denoising step, and the FINAL response with the result's frame rate, seed and prompt.
The frames come in pieces of at most `max_response_bytes`, each the answer to a fetch request of its own
on the same stream (contract.FETCH_FRAMES), the next sent once the previous piece arrived (FrameFetches):
tritonserver keeps every response of a request until the request ends, so one piece at a time through
short requests is what keeps its memory to about a piece. Each piece is written into a frame sink as it
arrives (memory, or a temporary file past `memory_frames_bytes`). Cancelling the job cancels the stream, which Triton turns
into `request.is_cancelled()` inside the model.

Which endpoints are served depends on the repository's component models: `ltx_pipeline`'s config names
them (contract.pipeline.COMPONENTS_PARAMETER). `ready` (called off the event loop, by the health loop)
learns them; `supports` (called by Submit, on the event loop) only reads what was learnt.

Triton being down never hangs a job: connecting has a short timeout, and a stream that stays silent for
longer than `response_timeout_s` (not even a heartbeat: the model sends one every few seconds, queued or
running) is treated as a lost backend. A component model that never answers (heartbeats go on) is
bounded inside `ltx_pipeline` by its `component_timeout_s`: the job fails as runner_unavailable, and for
`wedged_hold_s` after that the engine reports itself not ready, with the reason (`unready_reason`), so
readiness turns NOT_SERVING instead of feeding the hung model more jobs; then it tries again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from service.config import ServiceConfig
from service.contract import pipeline as contract
from service.domain.errors import Cancelled, RunnerUnavailable
from service.domain.geometry import FrameSize
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.progress import Progress, Stage
from service.domain.specs import CameraLora, Endpoint, Spec, spec_to_json
from service.engines.conditioning_tensors import kept_to_arrays, media_to_arrays
from service.engines.endpoint_pipelines import PIPELINE_SUPPORTED, EndpointInputs, served_endpoints
from service.models.lora import FetchedLora
from service.pipelines.long_video import FrameSink, FrameStore

log = logging.getLogger(__name__)

# A stream error with one of these gRPC statuses means the server went away (killed, restarted, network),
# not that the job is bad; other errors carry the model's own message (service/contract/pipeline.py).
_LOST_BACKEND_STATUSES = frozenset(
    {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED"}
)

StreamEvent = tuple[grpcclient.InferResult | None, InferenceServerException | None]


class TritonEngine:
    """The Engine Protocol over Triton's `ltx_pipeline` (see module docstring)."""

    applies_loras = False  # ltx_pipeline refuses LoRAs: no file need be fetched, and Submit refuses them

    def __init__(
        self,
        config: ServiceConfig,
        *,
        connect_timeout_s: float = 5.0,
        response_timeout_s: float = 120.0,
        ready_cache_s: float = 1.5,
        poll_interval_s: float = 0.1,
        max_response_bytes: int | None = None,
        memory_frames_bytes: int = 512 * 1024**2,
        wedged_hold_s: float = 60.0,
    ) -> None:
        self._url = config.triton_url
        self._connect_timeout_s = connect_timeout_s
        # The model sends a heartbeat every few seconds (contract.DEFAULT_HEARTBEAT_S) for as long as
        # a request lives, queued or running: this much silence means a wedged or lost server.
        self._response_timeout_s = response_timeout_s
        self._max_response_bytes = max_response_bytes  # None: the model's own cap
        self._memory_frames_bytes = memory_frames_bytes  # larger videos are received into a temporary file
        self._ready_cache_s = ready_cache_s
        self._poll_interval_s = poll_interval_s  # how often a waiting job looks at its cancel flag
        self._ready_lock = threading.Lock()
        self._ready_checked_at = -float("inf")
        self._ready_answer = False
        self._served: frozenset[Endpoint] | None = None  # from ltx_pipeline's config, once Triton answered
        self._wedged_hold_s = wedged_hold_s
        self._wedged: tuple[str, float] | None = None  # (why, when): a component timed out

    def supports(self, endpoint: Endpoint | str) -> bool:
        """Whether the connected repository serves `endpoint`. Until Triton has answered once, every
        endpoint `ltx_pipeline` can run counts as served: such jobs queue and fail as runner_unavailable
        while Triton is down, as text to video always did."""
        try:
            endpoint = Endpoint(endpoint)
        except ValueError:
            return False
        if endpoint not in PIPELINE_SUPPORTED:
            return False
        # No probe here: Submit calls this on the event loop. `ready` (the health loop) learns `_served`.
        return self._served is None or endpoint in self._served

    def precondition_failure(self, spec: Spec) -> str | None:
        """Why Triton cannot run `spec` although it serves its endpoint (FAILED_PRECONDITION at Submit):
        the component models keep only the distilled LoRA resident, so a camera LoRA cannot be applied."""
        camera = getattr(spec, "camera_lora", CameraLora.NONE)
        if camera is not CameraLora.NONE:
            return f"camera_lora {camera.value}: the Triton engine cannot apply camera LoRAs; send camera_lora none"
        return None

    def unready_reason(self) -> str | None:
        """Why the engine reports not ready although Triton answers (a hung component), else None."""
        wedged = self._wedged
        if wedged is None or time.monotonic() - wedged[1] >= self._wedged_hold_s:
            return None
        return wedged[0]

    def ready(self) -> bool:
        """Triton is reachable, `ltx_pipeline` is ready and no component timed out in the last
        `wedged_hold_s`; the probe's answer is cached for `ready_cache_s`."""
        if self.unready_reason() is not None:
            return False
        with self._ready_lock:
            now = time.monotonic()
            if now - self._ready_checked_at >= self._ready_cache_s:
                self._ready_answer = self._probe_ready()
                self._ready_checked_at = time.monotonic()
            return self._ready_answer

    def generate(
        self,
        inputs: EndpointInputs,
        loras: Sequence[FetchedLora],
        ctx: JobContext,
    ) -> GeneratedVideo:
        """The prepared job's pipeline, run in Triton (`loras` is empty: see `applies_loras`)."""
        endpoint = inputs.spec.endpoint
        if not self.supports(endpoint):
            # The API checks `supports` before queueing, so getting here is a bug, not a client mistake.
            raise ValueError(f"{contract.PIPELINE_MODEL} does not serve endpoint {endpoint}")
        return self._run_pipeline(inputs, ctx)

    def _run_pipeline(self, inputs: EndpointInputs, ctx: JobContext) -> GeneratedVideo:
        """One `ltx_pipeline` request over a gRPC stream of its own."""
        ctx.raise_if_cancelled()
        spec = inputs.spec
        events: queue.Queue[StreamEvent] = queue.Queue()
        client = grpcclient.InferenceServerClient(self._url)
        # The job's request id, so one job can be followed from the service log into tritonserver's.
        request_id = ctx.request_id
        try:
            self._require_pipeline_ready(client)
            client.start_stream(callback=lambda result, error: events.put((result, error)))
            client.async_stream_infer(
                contract.PIPELINE_MODEL,
                _request_inputs(inputs, self._max_response_bytes),
                request_id=request_id,
                enable_empty_final_response=True,
            )
            ctx.logger.info("triton request %s started (%s)", request_id, spec.endpoint)
            return self._collect(events, ctx, FrameFetches(client, request_id))
        except InferenceServerException as exc:
            raise RunnerUnavailable(f"Triton at {self._url} failed: {exc.message()}") from exc
        finally:
            # Cancels the request if it is still running (cancel, error, timeout); a no-op once it ended.
            client.stop_stream(cancel_requests=True)
            client.close()

    def _collect(
        self,
        events: queue.Queue[StreamEvent],
        ctx: JobContext,
        fetches: FrameFetches,
    ) -> GeneratedVideo:
        """Relay progress and fetch the frames until the pipeline's final response and the last piece
        are in; return the video or raise the job's error (from either request)."""
        frames = FrameReceiver(self._memory_frames_bytes)
        audio = AudioReceiver()
        final: grpcclient.InferResult | None = None
        silent_since = time.monotonic()
        while final is None or not frames.complete:
            if ctx.is_cancelled():
                ctx.logger.info("triton request %s cancelled by the client", ctx.request_id)
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
            assert result is not None
            if fetches.answers(result):
                frames.add(result)
                if not frames.complete:
                    fetches.next()
                continue
            if not fetches.started:  # the pipeline request's first answer: it takes fetches from now on
                fetches.next()
            progress = _progress_of(result)
            if progress is not None:
                ctx.on_progress(progress)
            audio.add(result)
            if _is_final(result):
                final = result
        assert final is not None  # the loop ends only once it came
        return _video_of(final, frames.result(ctx.request_id), audio.result(ctx.request_id))

    def _error_from_stream(self, error: InferenceServerException) -> Exception:
        if error.status() in _LOST_BACKEND_STATUSES:
            return RunnerUnavailable(f"lost the connection to Triton at {self._url}: {error.message()}")
        exception = contract.exception_from_message(error.message() or str(error))
        if (
            isinstance(exception, RunnerUnavailable)
            and contract.COMPONENT_TIMEOUT_MESSAGE in exception.message
        ):
            self._wedged = (exception.message, time.monotonic())
            log.error("%s; not ready for %.0f s", exception.message, self._wedged_hold_s)
        return exception

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
    served = served_endpoints(names)
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


def _request_inputs(inputs: EndpointInputs, max_response_bytes: int | None) -> list[grpcclient.InferInput]:
    spec = inputs.spec
    tensors = []
    for name, text in ((contract.ENDPOINT, str(spec.endpoint)), (contract.SPEC_JSON, spec_to_json(spec))):
        tensor = grpcclient.InferInput(name, [1], "BYTES")
        tensor.set_data_from_numpy(np.array([text.encode()], dtype=np.object_))
        tensors.append(tensor)
    arrays = media_to_arrays(inputs.media)
    if inputs.kept_pixels is not None:
        arrays.update(kept_to_arrays(inputs.kept_pixels))
    if max_response_bytes is not None:
        arrays[contract.MAX_RESPONSE_BYTES] = np.array([max_response_bytes], dtype=np.int64)
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def _progress_of(result: grpcclient.InferResult) -> Progress | None:
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


def _video_of(
    result: grpcclient.InferResult, frames: np.ndarray, audio: np.ndarray | None = None
) -> GeneratedVideo:
    rate = result.as_numpy(contract.AUDIO_SAMPLE_RATE)  # absent from a model older than audio
    return GeneratedVideo(
        frames=frames,
        frame_rate=float(result.as_numpy(contract.FRAME_RATE)[0]),
        seed=int(result.as_numpy(contract.SEED)[0]),
        prompt=_text(result.as_numpy(contract.PROMPT)),
        audio=audio,
        audio_sample_rate=int(rate[0]) if rate is not None and audio is not None else 0,
    )


class FrameFetches:
    """The fetch requests (contract.FETCH_FRAMES) that take one pipeline request's frames pieces, one at a
    time on that request's stream: the next is sent once the previous piece has arrived, so at most one
    piece is on its way and tritonserver, which keeps a request's responses until the request ends,
    holds about one piece, not the video."""

    def __init__(self, client: grpcclient.InferenceServerClient, request_id: str) -> None:
        self._client = client
        self._request_id = request_id
        self.sent = 0

    @property
    def started(self) -> bool:
        return self.sent > 0

    def next(self) -> None:
        tensor = grpcclient.InferInput(contract.FETCH_FRAMES, [1], "BYTES")
        tensor.set_data_from_numpy(np.array([self._request_id.encode()], dtype=np.object_))
        self._client.async_stream_infer(
            contract.PIPELINE_MODEL, [tensor], request_id=f"{self._request_id}.frames.{self.sent}"
        )
        self.sent += 1

    def answers(self, result: grpcclient.InferResult) -> bool:
        """Whether `result` answers one of these fetches (the pipeline request's own carry its id)."""
        return str(result.get_response().id) != self._request_id


class AudioReceiver:
    """The audio responses of one request (float32 [channels, n] pieces) assembled into one track; the
    track is small next to the frames (48 kHz stereo is 384 kB a second), so it is kept in memory."""

    def __init__(self) -> None:
        self._track: np.ndarray | None = None
        self._received = 0

    def add(self, result: grpcclient.InferResult) -> None:
        piece = result.as_numpy(contract.AUDIO)
        if piece is None:
            return
        start = int(result.as_numpy(contract.AUDIO_START)[0])
        total = int(result.as_numpy(contract.TOTAL_AUDIO_SAMPLES)[0])
        if self._track is None:
            self._track = np.zeros((piece.shape[0], total), dtype=np.float32)
        self._track[:, start : start + piece.shape[1]] = piece
        self._received += piece.shape[1]

    def result(self, request_id: str) -> np.ndarray | None:
        if self._track is None:
            return None
        if self._received != self._track.shape[1]:
            raise RuntimeError(
                f"{contract.PIPELINE_MODEL} ended request {request_id} with {self._received} of "
                f"{self._track.shape[1]} audio samples"
            )
        return self._track


class FrameReceiver:
    """The frames responses of one request written into a FrameSink as they arrive: in memory, or in an
    unlinked temporary file once the video is larger than `memory_bytes` (returned as a read-only memmap),
    so the service never holds more than one response of a long video."""

    def __init__(self, memory_bytes: int) -> None:
        self._memory_bytes = memory_bytes
        self._sink: FrameSink | None = None
        self._received = 0

    def add(self, result: grpcclient.InferResult) -> None:
        piece = result.as_numpy(contract.FRAMES)
        if piece is None:
            return
        start_tensor, total_tensor = (
            result.as_numpy(contract.FRAME_START),
            result.as_numpy(contract.TOTAL_FRAMES),
        )
        # A model from before frames were streamed sends them all in one response, without these two.
        start = int(start_tensor[0]) if start_tensor is not None else 0
        total = int(total_tensor[0]) if total_tensor is not None else len(piece)
        if self._sink is None:
            height, width = piece.shape[1:3]
            store = (
                FrameStore.TEMP_FILE if total * piece[0].nbytes > self._memory_bytes else FrameStore.MEMORY
            )
            self._sink = FrameSink(total, FrameSize(int(width), int(height)), reverse=False, store=store)
        self._sink.write(start, piece)
        self._received += len(piece)

    @property
    def complete(self) -> bool:
        return self._sink is not None and self._received >= self._sink.shape[0]

    def result(self, request_id: str) -> np.ndarray:
        if self._sink is None or self._received != self._sink.shape[0]:
            expected = 0 if self._sink is None else self._sink.shape[0]
            raise RuntimeError(
                f"{contract.PIPELINE_MODEL} ended request {request_id} with {self._received} of {expected} frames"
            )
        return self._sink.result()


def _is_final(result: grpcclient.InferResult) -> bool:
    parameters = result.get_response().parameters
    return "triton_final_response" in parameters and parameters["triton_final_response"].bool_param


def _text(array: np.ndarray) -> str:
    value = array.reshape(-1)[0]
    return value.decode() if isinstance(value, bytes) else str(value)
