"""`python -m bench.gpu --smoke`: the GPU benchmark's code, run on a CPU at reduced depth and size.

The GPU machine has torch, transformers and diffusers (brought as a wheel) but none of the service's
serving dependencies, so the benchmark must import none of them: checked here with those modules blocked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Not on the GPU machine (bench/README.md, "Issue 13"): importing any of them there would stop the run.
ABSENT_ON_GPU_MACHINE = (
    "cryptography",
    "moto",
    "av",
    "grpc",
    "tritonclient",
    "psycopg",
    "boto3",
    "botocore",
    "prometheus_client",
    "cv2",
)


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
    # 288x192 -> first pass 192x128 (2/3) -> second pass 384x256: 12 x 8 cells, 2 latent frames of 9.
    assert data["step_tokens"] == 12 * 8 * 2 and data["step_flops"] > 0
    request = data["request"]
    assert request["frames_shape"] == [9, 192, 288, 3]
    assert request["stages"]["first pass"]["calls"] == 7 and request["stages"]["second pass"]["calls"] == 3
    assert all(stage["seconds"] > 0 for stage in request["stages"].values())
    ltx2_rows = [line for line in result.stdout.splitlines() if line.startswith("| LTX-2.3 step:")]
    assert len(ltx2_rows) == 3 and all("| ok |" in line for line in ltx2_rows), ltx2_rows
