"""What `TritonEngine` and the Triton model `ltx_pipeline` agree on: model name, tensor names, errors.

Imported by the client side (service/engines/triton.py), by the model itself
(service/engines/triton_backend/pipeline_model.py) and by the config generator (export/triton_config.py),
so the names are written once.
"""

from __future__ import annotations

from service.domain.errors import Cancelled, ErrorType, JobError, RunnerUnavailable

PIPELINE_MODEL = "ltx_pipeline"

# `ltx_pipeline`'s config.pbtxt parameter naming the component models of its repository (comma-separated):
# which endpoints it serves (service/engines/endpoint_pipelines.py `served_endpoints`), read by the model itself and
# by TritonEngine.
COMPONENTS_PARAMETER = "components"

# Inputs: one request per job. Both BYTES tensors of shape [1]:
ENDPOINT = "endpoint"  # the endpoint id, e.g. "ltx-video-lora"
SPEC_JSON = "spec_json"  # service.domain.specs.spec_to_json(spec), the size already resolved
# Optional: the decoded conditioning media (service/engines/conditioning_tensors.py), left out when empty.
CONDITION_FRAMES = "condition_frames"  # UINT8 [T, H, W, 3]: every condition's frames, one after another
CONDITION_FRAME_COUNTS = "condition_frame_counts"  # INT32 [M]: frames of each condition (1: an image)
CONDITION_START_FRAMES = "condition_start_frames"  # INT32 [M]: output frame of each condition's first
CONDITION_STRENGTHS = "condition_strengths"  # FP32 [M]
KEPT_FRAMES = "kept_frames"  # UINT8 [K, H, W, 3]: extend's input frames that start the output
CONDITION_INPUTS = (CONDITION_FRAMES, CONDITION_FRAME_COUNTS, CONDITION_START_FRAMES, CONDITION_STRENGTHS)
# Optional INT64 [1]: lowers the model's cap on one frames response (never raises it; tests use it).
MAX_RESPONSE_BYTES = "max_response_bytes"
# A fetch request carries only this, BYTES [1]: the request id of a pipeline request in flight. It is
# answered by one response (with the FINAL flag) holding that request's next frames piece (FRAMES,
# FRAME_START, TOTAL_FRAMES), or by that request's error. The client fetches the pieces one after
# another: tritonserver keeps every response of a request until the request ends, so frames sent as
# responses of the pipeline request itself would pile up there, the whole video by the end.
FETCH_FRAMES = "fetch_frames"

# config.pbtxt parameters of `ltx_pipeline` besides `components`:
MAX_RESPONSE_BYTES_PARAMETER = "max_response_bytes"  # the cap on one frames response's FRAMES
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024**2  # 24 frames of 720p; far under gRPC's 2 GiB message cap
# Seconds the pipeline waits for the client to fetch a frames piece before it gives the request up.
FETCH_TIMEOUT_PARAMETER = "fetch_timeout_s"
DEFAULT_FETCH_TIMEOUT_S = 300.0
HEARTBEAT_PARAMETER = "heartbeat_s"  # seconds between heartbeats (empty responses) of a live request
DEFAULT_HEARTBEAT_S = 5.0
# Seconds one component call (a BLS request: a denoising step, a decode chunk) may take before the
# request fails as runner_unavailable: a component model that never answers (a wedged GPU, a hung
# backend) must not hold a job forever while the heartbeats say it is alive.
COMPONENT_TIMEOUT_PARAMETER = "component_timeout_s"
DEFAULT_COMPONENT_TIMEOUT_S = 600.0
# The start of the message of that failure, so the client can tell a hung component from a lost server.
COMPONENT_TIMEOUT_MESSAGE = "did not answer within"

# Progress responses carry these (shape [1] each).
STAGE = "stage"  # BYTES, a service.domain.progress.Stage value
STEP = "step"  # INT32, 1-based step within the stage (0 when the stage has no steps)
TOTAL = "total"  # INT32, steps in the stage (0 when it has none)
MESSAGE = "message"  # BYTES, a human-readable log line

# Frames pieces, in order, each at most the response cap: the video streamed in pieces, each piece the
# response to one fetch request (FETCH_FRAMES).
FRAMES = "frames"  # UINT8 [n, H, W, 3]: output frames frame_start .. frame_start + n - 1
FRAME_START = "frame_start"  # INT64 [1]
TOTAL_FRAMES = "total_frames"  # INT64 [1]: frames of the whole video

# Audio responses (LTX-2.3 with generate_audio), after the frames, in order, each at most the response cap:
AUDIO = "audio"  # FP32 [channels, n]: samples audio_start .. audio_start + n - 1 of every channel, in [-1, 1]
AUDIO_START = "audio_start"  # INT64 [1]
TOTAL_AUDIO_SAMPLES = "total_audio_samples"  # INT64 [1]: samples per channel of the whole track

# The last response (sent with the FINAL flag) carries what describes the result.
FRAME_RATE = "frame_rate"  # FP32 [1]
SEED = "seed"  # INT64 [1]
PROMPT = "prompt"  # BYTES [1], the prompt actually used
AUDIO_SAMPLE_RATE = "audio_sample_rate"  # INT32 [1]: the audio's rate (0: no audio)

# A response with none of these outputs is a heartbeat: the request is alive (queued or running).
PROGRESS_OUTPUTS = (STAGE, STEP, TOTAL, MESSAGE)
FRAMES_OUTPUTS = (FRAMES, FRAME_START, TOTAL_FRAMES)
AUDIO_OUTPUTS = (AUDIO, AUDIO_START, TOTAL_AUDIO_SAMPLES)
RESULT_OUTPUTS = (FRAME_RATE, SEED, PROMPT, AUDIO_SAMPLE_RATE)

# A model error travels as text; its first word names the job error type so the client can rebuild it.
_ERROR_SEPARATOR = ": "


def error_message_for(exc: BaseException) -> str:
    """The TritonError text for `exc`: `<error_type>: <message>` (internal_error for anything unexpected)."""
    if isinstance(exc, JobError):
        return f"{exc.error_type.value}{_ERROR_SEPARATOR}{exc.message}"
    return f"{ErrorType.INTERNAL_ERROR.value}{_ERROR_SEPARATOR}{type(exc).__name__}: {exc}"


def exception_from_message(text: str) -> Exception:
    """Rebuild the error a model reported with `error_message_for`.

    Errors the client caused or can act on come back as their `JobError`; anything else is a bug on the
    Triton side and comes back as a RuntimeError, which the job runner reports as internal_error.
    """
    type_name, separator, message = text.partition(_ERROR_SEPARATOR)
    known = {error_type.value: error_type for error_type in ErrorType}
    error_type = known.get(type_name) if separator else None
    if error_type is ErrorType.CANCELLED:
        return Cancelled(message)
    if error_type is ErrorType.RUNNER_UNAVAILABLE:
        return RunnerUnavailable(message)
    if error_type is None or error_type is ErrorType.INTERNAL_ERROR:
        return RuntimeError(f"{PIPELINE_MODEL} failed: {message if error_type else text}")
    return JobError(error_type, message)
