"""`python -m bench.gpu --smoke`: the GPU benchmark's code, run on a CPU at reduced depth and size.

The GPU machine has torch, transformers and diffusers (brought as a wheel) but none of the service's
serving dependencies, so the benchmark must import none of them: checked here with those modules blocked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from service.config import FastPathConfig
from service.contract.frames import latent_tokens
from service.domain.geometry import DISTILLED_FIRST_PASS_DOWNSCALE, FrameSize, multiscale_sizes

ROOT = Path(__file__).resolve().parents[2]
# Not on the GPU machine (KINDS.md's package list of the nvidia-h200 image; it has grpcio and
# prometheus-client): importing any of them there would stop the run.
ABSENT_ON_GPU_MACHINE = ("av", "tritonclient", "psycopg", "boto3", "botocore", "cryptography", "moto")


def test_bench_gpu_imports_nothing_the_gpu_machine_lacks() -> None:
    blocker = (
        "import sys\n"
        f"for name in {ABSENT_ON_GPU_MACHINE!r}: sys.modules[name] = None\n"
        "import bench.gpu.__main__, bench.gpu.ltx2\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocker], cwd=ROOT, check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_smoke_run_measures_every_row_and_the_whole_request(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    command = [sys.executable, "-m", "bench.gpu", "--smoke", "--json", str(out)]
    result = subprocess.run(command, cwd=ROOT, check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("| step (") >= 8 and "request total" in result.stdout
    data = json.loads(out.read_text())
    rows = {row["name"]: row for row in data["rows"]}
    assert rows["eager"]["status"] == "ok" and rows["eager"]["seconds"] > 0
    assert rows["CUDA graphs"]["status"] == "n/a: CUDA graphs need a CUDA device"
    for name in ("SDPA flash", "torch.compile (regional)"):
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["max_abs_diff"] < 1e-4  # fp32: another kernel or dynamo, rounding only
    for name in ("FP8 scaled mm (dynamic scales)", "FP8 scaled mm (static scales)"):
        assert rows[name]["status"] == "ok", rows[name]
        assert 0 < rows[name]["relative_error"] < 0.1  # quantized, but within E4M3's rounding
    # The step is the request's second pass (288x192 output, 9 frames), as the distilled pipeline sizes it.
    second = multiscale_sizes(FrameSize(288, 192), DISTILLED_FIRST_PASS_DOWNSCALE).second_pass
    assert data["step_tokens"] == latent_tokens(second, 9) and data["step_flops"] > 0
    request = data["request"]
    assert request["frames_shape"] == [9, 192, 288, 3]
    assert request["stages"]["first pass"]["calls"] == 7 and request["stages"]["second pass"]["calls"] == 3
    assert all(stage["seconds"] > 0 for stage in request["stages"].values())
    # The recommendation it prints is a valid [fast_path] section.
    toml = result.stdout[result.stdout.index("[fast_path]") :]
    assert FastPathConfig(**tomllib.loads(toml)["fast_path"]) == FastPathConfig(**data["chosen"])
    ltx2_rows = [line for line in result.stdout.splitlines() if line.startswith("| LTX-2.3 step (")]
    assert len(ltx2_rows) == 6 and all("| ok |" in line for line in ltx2_rows), ltx2_rows
    fp8_relative = [float(line.rstrip(" |").rsplit("|", 1)[-1]) for line in ltx2_rows[3:]]
    assert all(0 < value < 0.1 for value in fp8_relative), fp8_relative  # FP8 against eager
