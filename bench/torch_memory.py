"""Live torch tensor memory of a piece of code, counted op by op (CPU has no allocator statistics).

`LiveTensorMeter` is a `TorchDispatchMode`: every aten op's outputs that own their storage are counted
as allocated until the tensor object is freed (a weakref finalizer), which gives the peak of live bytes
and the largest single tensor. Tensors created before the meter started (model weights) are not counted,
and neither are buffers that kernels allocate internally or numpy arrays (use tracemalloc for those).
It is exact enough to tell whether memory grows with the length of a video.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveTensorMeter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.live_bytes = 0
        self.peak_bytes = 0
        self.largest_bytes = 0
        self._tracked: set[int] = set()  # storage addresses counted and not yet freed
        self._lock = threading.Lock()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor) and not leaf._is_view():
                self._track(leaf)
        return out

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        address, nbytes = storage.data_ptr(), storage.nbytes()
        if nbytes == 0:
            return
        with self._lock:
            if address in self._tracked:  # an in-place op returned a tensor already counted
                return
            self._tracked.add(address)
            self.live_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
            self.largest_bytes = max(self.largest_bytes, nbytes)
        weakref.finalize(tensor, self._release, address, nbytes)

    def _release(self, address: int, nbytes: int) -> None:
        with self._lock:
            if address in self._tracked:
                self._tracked.discard(address)
                self.live_bytes -= nbytes
