"""What every engine does around its pipeline, whichever process the pipeline runs in.

Before: `expand_prompt` rewrites the prompt with the configured expander (the result reports the prompt
actually used; the job log says so when there is no expander or it fails), and the safety checker is
picked for the request. After: the output frames are checked (field "video"). The extend spec has no
`enable_safety_checker` field, so its output is always checked unless the service config turns the
checker off.
"""

from __future__ import annotations

import dataclasses

from service.config import ServiceConfig
from service.domain.context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.progress import Stage
from service.domain.specs import Spec
from service.prompting import build_prompt_expander, expand_or_explain
from service.safety import build_safety_checker
from service.safety.checker import DISABLED_MESSAGE, SafetyChecker

OUTPUT_FIELD = "video"  # the field a flagged output is reported under
SAFETY_PASSED_MESSAGE = "safety checker: the output video passed"


class JobFrame:
    """Built once per engine: the expander and the checker load their models once."""

    def __init__(self, config: ServiceConfig) -> None:
        self._expander = build_prompt_expander(config.prompt_expansion)
        self._safety = build_safety_checker(config.safety)

    def prepare(self, spec: Spec, ctx: JobContext) -> tuple[Spec, SafetyChecker | None]:
        """The spec with its prompt expanded (when asked), and the checker the request asks for."""
        if getattr(spec, "expand_prompt", False):
            prompt = expand_or_explain(self._expander, spec.prompt, ctx.on_progress)
            spec = dataclasses.replace(spec, prompt=prompt)
        if not getattr(spec, "enable_safety_checker", True):
            return spec, None
        if self._safety is None:
            ctx.report(Stage.DECODING, DISABLED_MESSAGE)
        return spec, self._safety

    def check_output(self, video: GeneratedVideo, checker: SafetyChecker | None, ctx: JobContext) -> None:
        """Raise JobError(content_policy_violation) if the checker flags the output."""
        if checker is None:
            return
        checker.check_frames(video.frames, field=OUTPUT_FIELD)
        ctx.report(Stage.DECODING, SAFETY_PASSED_MESSAGE)
