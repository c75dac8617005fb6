"""The Python backend's own utilities module (`triton_python_backend_utils`, its pure-Python half shipped
with pytriton), importable in a test process as the stub process has it, so that the Triton model classes
can be imported and driven without a tritonserver."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import pytriton

UTILS_PATH = Path(pytriton.__file__).parent / "tritonserver/backends/python/triton_python_backend_utils.py"


def install_python_backend_utils(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Loads the module and registers it in `sys.modules` for the test's duration."""
    spec = importlib.util.spec_from_file_location("triton_python_backend_utils", UTILS_PATH)
    assert spec is not None and spec.loader is not None
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", utils)
    return utils
