"""`ltx_pipeline`: a decoupled Triton Python model that runs the project's pipelines on BLS components.

One request per job (tensor names in service/contract/pipeline.py): the endpoint id, the spec as
JSON and, for the conditioned endpoints, the media the service decoded (conditioning_tensors). `execute`
hands each request to a thread of its own and returns at once, so requests queue here rather than in
Triton's scheduler, each with:
  - an immediate "accepted" progress response once its inputs parse (a bad request fails at once);
  - heartbeats (responses with no outputs) every `heartbeat_s` until it ends, queued or running, so the
    client needs no silence timeout that would fail queued work;
  - the accelerator taken in arrival order, one pipeline at a time (`run_endpoint`, what LocalEngine
    runs), with a progress response per pipeline stage and denoising step and the request's cancellation
    checked while it waits and between steps (the pipeline raises Cancelled);
  - the frames cut into pieces of at most `max_response_bytes` each (FRAMES, FRAME_START, TOTAL_FRAMES)
    while the pipeline decodes them, chunk by chunk (JobContext.frame_output -> requests.StreamedFrames),
    and handed to the client's fetch requests (contract.FETCH_FRAMES), one piece per fetch, at most one
    piece waiting (requests.PieceHandoff: the pipeline waits for the client). Not as responses of the
    pipeline request: tritonserver 2.51 keeps every response of a request until it ends, so the whole
    video would pile up in tritonserver. So no message nears gRPC's 2 GiB cap, the stub holds one decode
    chunk of a long video and tritonserver about one piece, never the video;
  - the FINAL flag on the last response: the result's frame rate, seed and prompt, or a TritonError that
    fails that request alone.
`finalize` waits for the requests in flight. The model refuses to load unless its config is decoupled.
Log lines go to tritonserver's log through `pb_utils.Logger`, each naming its request id.

config.pbtxt parameters: `components`, the repository's component models (which endpoints are served);
the ModelConfig fields (preset, seed, dtype, model_dir, ...) say which model the tiny/real assets come
from; `assets_dir` (relative to the version directory) holds exported assets instead; `device` is where
the pipeline keeps its latents (cpu, or cuda next to TensorRT models); `max_response_bytes` and
`heartbeat_s`, `component_timeout_s` and `fetch_timeout_s` (service/contract/pipeline.py).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils  # only importable inside a Triton Python-backend stub

from service.contract import pipeline as contract
from service.domain.errors import Cancelled, ErrorType, JobError
from service.domain.geometry import FrameSize
from service.domain.job_context import JobContext, job_logger
from service.domain.outputs import GeneratedVideo
from service.domain.progress import Progress, Stage
from service.domain.specs import Endpoint, spec_from_json
from service.engines.conditioning_tensors import kept_from_arrays, media_from_arrays
from service.engines.endpoint_pipelines import (
    LTX2_COMPONENTS,
    BoundComponents,
    EndpointInputs,
    pipeline_endpoint,
    run_endpoint,
    served_endpoints,
)
from service.engines.slots import Slots
from service.engines.triton_backend.bls import bls_components
from service.engines.triton_backend.ltx2_bls import ltx2_bls_components
from service.engines.triton_backend.params import (
    ltx2_config_from,
    model_config_from,
    model_parameters,
    resolve_path,
    version_dir,
)
from service.engines.triton_backend.requests import (
    Heartbeat,
    InFlight,
    Piece,
    PieceHandoff,
    PieceHandoffs,
    PiecesEnded,
    SerialSender,
    StreamedFrames,
    frames_per_response,
)
from service.logs import request_scope
from service.media.encode import frame_chunks
from service.models.assets import assets_from_models, load_assets
from service.pipelines.components import Components
from service.pipelines.ltx2.components import Ltx2Components

log = logging.getLogger("ltx_pipeline")

NO_LORA = "LoRAs are not supported by the Triton engine yet (TensorRT plans are built without adapters)"
NO_CAMERA_LORA = "camera LoRAs are not supported by the Triton engine (only the distilled LoRA is resident)"
FINALIZE_WAIT_S = 30.0  # how long an unload waits for the requests in flight


class PipelineModel:
    def initialize(self, args: dict[str, str]) -> None:
        if not pb_utils.using_decoupled_model_transaction_policy(json.loads(args["model_config"])):
            raise ValueError(
                f"{contract.PIPELINE_MODEL} must be decoupled (model_transaction_policy {{ decoupled: true }}): "
                "it streams progress and frames as several responses per request"
            )
        _log_to_triton()
        parameters = model_parameters(args)
        assets_dir = resolve_path(parameters, "assets_dir", version_dir(args))
        model_config = model_config_from(parameters)
        assets = load_assets(assets_dir) if assets_dir else assets_from_models(model_config)
        device = torch.device(parameters.get("device") or "cpu")
        names = parameters.get(contract.COMPONENTS_PARAMETER, "")
        component_names = frozenset(name.strip() for name in names.split(",") if name.strip())
        component_timeout_s = float(
            parameters.get(contract.COMPONENT_TIMEOUT_PARAMETER) or contract.DEFAULT_COMPONENT_TIMEOUT_S
        )
        self.components = bls_components(assets, device, component_names, component_timeout_s)
        self.ltx2_components = _ltx2_components(parameters, device, component_names, component_timeout_s)
        self.served = served_endpoints(component_names)
        self.max_response_bytes = int(
            parameters.get(contract.MAX_RESPONSE_BYTES_PARAMETER) or contract.DEFAULT_MAX_RESPONSE_BYTES
        )
        self.heartbeat_s = float(parameters.get(contract.HEARTBEAT_PARAMETER) or contract.DEFAULT_HEARTBEAT_S)
        self.fetch_timeout_s = float(
            parameters.get(contract.FETCH_TIMEOUT_PARAMETER) or contract.DEFAULT_FETCH_TIMEOUT_S
        )
        self.handoffs = PieceHandoffs()  # each pipeline request's frames, waiting for its fetches
        self.accelerator = Slots(1)  # one pipeline at a time on the component models' device, FIFO
        self.in_flight = InFlight()
        log.info(
            "ltx_pipeline ready: preset %s, assets %s, device %s, endpoints %s",
            model_config.preset,
            assets_dir,
            device,
            ", ".join(sorted(self.served)),
        )

    def execute(self, requests: list[Any]) -> None:
        # Decoupled: every response goes through the request's sender, and execute returns None at once.
        for request in requests:
            self.in_flight.add()
            thread = threading.Thread(
                target=self._serve_and_release, args=(request,), name=f"ltx_pipeline-{request.request_id()}"
            )
            thread.daemon = True
            thread.start()

    def finalize(self) -> None:
        if not self.in_flight.wait_idle(FINALIZE_WAIT_S):
            log.warning("ltx_pipeline unloading with %d request(s) still in flight", self.in_flight.count)
        log.info("ltx_pipeline unloaded")

    def _serve_and_release(self, request: Any) -> None:
        try:
            self._serve(request)
        finally:
            self.in_flight.done()

    def _serve(self, request: Any) -> None:
        """Run one request to its FINAL response; its failure is its own (the others go on). Its log lines
        carry its request id, which is the job's (TritonEngine sends it)."""
        with request_scope(request.request_id() or "unnamed"):
            sender = SerialSender(
                request.get_response_sender(), pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
            )
            fetched = _optional_text_input(request, contract.FETCH_FRAMES)
            if fetched is None:
                self._serve_pipeline(request, sender)
            else:
                self._serve_fetch(request, sender, fetched)

    def _serve_pipeline(self, request: Any, sender: SerialSender) -> None:
        request_id = request.request_id()
        handoff: PieceHandoff | None = None
        try:
            inputs = _read_inputs(request, self.served)
            max_bytes = _response_cap(request, self.max_response_bytes)
            handoff = self._open_handoff(request_id)
            log.info("request %s: %s accepted", request_id, inputs.spec.endpoint)
            sender.send(
                _progress_response(Progress(Stage.WAITING, message=f"accepted by {contract.PIPELINE_MODEL}"))
            )
            with Heartbeat(sender, _heartbeat_response, self.heartbeat_s):
                video, streamed = self._run_when_free(request, inputs, sender, handoff, max_bytes)
                if not streamed:  # a pipeline that returns its frames at the end (no FrameOutput)
                    self._hand_over_frames(handoff, video, max_bytes, request.is_cancelled)
                handoff.wait_sent(request.is_cancelled, self.fetch_timeout_s)
                _send_audio(sender, video, max_bytes)
            handoff.end()
            sender.send(_result_response(video), final=True)
            log.info("request %s: done, %d frames", request_id, len(video.frames))
        except Exception as exc:  # any failure ends this request, never the model
            if handoff is not None:  # a fetch waiting for a piece ends with this request's error
                handoff.end(contract.error_message_for(exc))
            if isinstance(exc, JobError | BadRequest):  # expected outcomes, not bugs: no traceback
                log.info("request %s: %s", request_id, exc)
            else:
                log.exception("request %s failed", request_id)
            _send_final_error(sender, exc, request_id)

    def _open_handoff(self, request_id: str) -> PieceHandoff:
        if not request_id:
            raise BadRequest(
                f"a request id is needed: the client fetches the frames by it ({contract.FETCH_FRAMES})"
            )
        try:
            return self.handoffs.open(request_id)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc

    def _serve_fetch(self, request: Any, sender: SerialSender, pipeline_request_id: str) -> None:
        """Answer a fetch request with the next frames piece of `pipeline_request_id` (waiting for the
        pipeline to decode it), or with that request's error."""
        handoff = self.handoffs.get(pipeline_request_id)
        try:
            if handoff is None:
                raise BadRequest(
                    f"{contract.FETCH_FRAMES}: no {contract.PIPELINE_MODEL} request {pipeline_request_id!r} in flight"
                )
            start, piece, total = handoff.take(request.is_cancelled)
            try:
                sender.send(_frames_response(start, piece, total), final=True)
            finally:
                handoff.sent()
        except PiecesEnded as ended:  # the pipeline failed (its own error, as the client decodes it)
            code = pb_utils.TritonError.INTERNAL if ended.message else pb_utils.TritonError.INVALID_ARG
            _send_final(sender, pb_utils.TritonError(ended.message or str(ended), code), pipeline_request_id)
        except Exception as exc:  # noqa: BLE001 - e.g. cancelled: this fetch ends, the pipeline goes on
            _send_final_error(sender, exc, pipeline_request_id)

    def _hand_over_frames(
        self, handoff: PieceHandoff, video: GeneratedVideo, max_bytes: int, is_cancelled: Any
    ) -> None:
        """The frames of a pipeline that returned them whole, in pieces of at most `max_bytes`."""
        frames = video.frames
        per_response = frames_per_response(int(np.prod(frames.shape[1:])), max_bytes)
        # A long video is a memmap of a temporary file: frame_chunks drops each piece's pages once copied.
        for index, piece in enumerate(frame_chunks(frames, per_response)):
            handoff.put((index * per_response, piece, len(frames)), is_cancelled, self.fetch_timeout_s)

    def _run_when_free(
        self,
        request: Any,
        inputs: EndpointInputs,
        sender: SerialSender,
        handoff: PieceHandoff,
        max_bytes: int,
    ) -> tuple[GeneratedVideo, bool]:
        """Wait for the accelerator (cancellable), then run the pipeline holding it; its frames are sent
        as it decodes them. Returns the video and whether its frames were streamed that way."""
        if not self.accelerator.free():
            sender.send(_progress_response(Progress(Stage.WAITING, message="waiting for the accelerator")))

        def on_progress(progress: Progress) -> None:
            sender.send(_progress_response(progress))

        streams: list[StreamedFrames] = []

        def frame_output(num_frames: int, size: FrameSize) -> StreamedFrames:
            def send(start: int, piece: np.ndarray, total: int) -> None:
                pieces: Piece = (start, piece, total)
                handoff.put(pieces, request.is_cancelled, self.fetch_timeout_s)

            def chunk_sent() -> None:
                handoff.wait_sent(request.is_cancelled, self.fetch_timeout_s)

            stream = StreamedFrames(num_frames, size.height, size.width, max_bytes, send, chunk_sent)
            streams.append(stream)
            return streams[-1]

        request_id = request.request_id() or "unnamed"
        logger = job_logger(request_id, log.name)
        ctx = JobContext(request_id, on_progress, request.is_cancelled, logger, frame_output)
        with self.accelerator.held(ctx.is_cancelled):
            return self._generate(inputs, ctx), bool(streams)

    def _generate(self, inputs: EndpointInputs, ctx: JobContext) -> GeneratedVideo:
        # Prompt expansion, media fetching and the safety checks run in the service (its prepare and
        # finish stages).
        # Entries with an empty path are no LoRA (the LTX-2.3 spec's own example sends one); Submit refuses
        # the others, so these are a second line of defence.
        if any(lora.path for lora in getattr(inputs.spec, "loras", ())):
            raise JobError(ErrorType.LORA_LOAD_FAILED, NO_LORA)
        if getattr(getattr(inputs.spec, "camera_lora", None), "value", "none") != "none":
            raise JobError(ErrorType.LORA_LOAD_FAILED, NO_CAMERA_LORA)
        return run_endpoint(self._bound(inputs), inputs, ctx)

    def _bound(self, inputs: EndpointInputs) -> BoundComponents:
        if pipeline_endpoint(inputs.spec.endpoint).family is Ltx2Components:
            if self.ltx2_components is None:  # `served` has it only with its component models
                raise BadRequest(f"{inputs.spec.endpoint}: no LTX-2.3 component models in this repository")
            return self.ltx2_components
        components: Components = self.components
        return components


class _TritonLogHandler(logging.Handler):
    """Python log records (the pipelines' included) into tritonserver's log, at their level."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.ERROR:
                pb_utils.Logger.log_error(message)
            elif record.levelno >= logging.WARNING:
                pb_utils.Logger.log_warn(message)
            else:
                pb_utils.Logger.log_info(message)
        except Exception:  # noqa: BLE001 - logging.Handler's contract: a log line never fails a request
            self.handleError(record)


def _log_to_triton() -> None:
    root = logging.getLogger()
    if not any(isinstance(handler, _TritonLogHandler) for handler in root.handlers):
        handler = _TritonLogHandler()
        handler.setFormatter(logging.Formatter("%(name)s [%(threadName)s] %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)


class BadRequest(ValueError):
    """The request's tensors are not a served endpoint, its spec and its media (a client bug, not a job
    error)."""


def _read_inputs(request: Any, served: frozenset[Endpoint]) -> EndpointInputs:
    try:
        endpoint = _text_input(request, contract.ENDPOINT)
        spec = spec_from_json(endpoint, _text_input(request, contract.SPEC_JSON))
    except Exception as exc:
        raise BadRequest(f"{contract.ENDPOINT}/{contract.SPEC_JSON}: {exc}") from exc
    if spec.endpoint not in served:
        raise BadRequest(
            f"{contract.PIPELINE_MODEL} does not serve endpoint {spec.endpoint} in this repository"
        )
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


def _response_cap(request: Any, model_cap: int) -> int:
    """The model's cap on one frames response, lowered by the request's optional MAX_RESPONSE_BYTES."""
    tensor = pb_utils.get_input_tensor_by_name(request, contract.MAX_RESPONSE_BYTES)
    if tensor is None:
        return model_cap
    requested = int(tensor.as_numpy().reshape(-1)[0])
    if requested <= 0:
        raise BadRequest(f"{contract.MAX_RESPONSE_BYTES} must be positive, got {requested}")
    return min(model_cap, requested)


def _text_input(request: Any, name: str) -> str:
    value = _optional_text_input(request, name)
    if value is None:
        raise ValueError(f"missing input {name}")
    return value


def _optional_text_input(request: Any, name: str) -> str | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
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


def _heartbeat_response() -> Any:
    return pb_utils.InferenceResponse(output_tensors=[])


def _frames_response(start: int, piece: np.ndarray, total: int) -> Any:
    return pb_utils.InferenceResponse(
        output_tensors=[
            pb_utils.Tensor(contract.FRAMES, piece),
            pb_utils.Tensor(contract.FRAME_START, np.array([start], dtype=np.int64)),
            pb_utils.Tensor(contract.TOTAL_FRAMES, np.array([total], dtype=np.int64)),
        ]
    )


def _send_audio(sender: SerialSender, video: GeneratedVideo, max_bytes: int) -> None:
    """The audio track (float32 [channels, samples]) after the frames, each response at most `max_bytes`."""
    if video.audio is None:
        return
    audio = np.ascontiguousarray(video.audio, dtype=np.float32)
    total = np.array([audio.shape[1]], dtype=np.int64)
    per_response = max(1, max_bytes // max(1, audio.shape[0] * audio.itemsize))
    for start in range(0, audio.shape[1], per_response):
        piece = np.ascontiguousarray(audio[:, start : start + per_response])
        sender.send(
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(contract.AUDIO, piece),
                    pb_utils.Tensor(contract.AUDIO_START, np.array([start], dtype=np.int64)),
                    pb_utils.Tensor(contract.TOTAL_AUDIO_SAMPLES, total),
                ]
            )
        )


def _result_response(video: GeneratedVideo) -> Any:
    rate = video.audio_sample_rate if video.audio is not None else 0
    return pb_utils.InferenceResponse(
        output_tensors=[
            pb_utils.Tensor(contract.FRAME_RATE, np.array([video.frame_rate], dtype=np.float32)),
            pb_utils.Tensor(contract.SEED, np.array([video.seed], dtype=np.int64)),
            pb_utils.Tensor(contract.PROMPT, _bytes(video.prompt)),
            pb_utils.Tensor(contract.AUDIO_SAMPLE_RATE, np.array([rate], dtype=np.int32)),
        ]
    )


def _ltx2_components(
    parameters: dict[str, str], device: torch.device, component_names: frozenset[str], timeout_s: float
) -> Ltx2Components | None:
    """BLS bindings of the LTX-2.3 component models, when the repository has them: the tokenizer and
    geometry come from the `ltx2.*` parameters' models (built here for the tiny preset)."""
    if not component_names >= LTX2_COMPONENTS:
        return None
    from service.models.ltx2_component_modules import load_ltx2_assets

    geometry, tokenizer = load_ltx2_assets(ltx2_config_from(parameters))
    return ltx2_bls_components(geometry, tokenizer, device, component_names, timeout_s)


def _send_final_error(sender: SerialSender, exc: Exception, request_id: str) -> None:
    _send_final(sender, _triton_error(exc), request_id)


def _send_final(sender: SerialSender, error: Any, request_id: str) -> None:
    try:
        sender.send(pb_utils.InferenceResponse(error=error), final=True)
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
