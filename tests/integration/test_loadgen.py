"""`ltx-loadgen --config loadtest/*.json` against a real `ltx-serve` with a bounded queue and no
workers (so nothing drains it): the reports are ghz-shaped, and past the bound the only error is
RESOURCE_EXHAUSTED."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema

from tests.integration.service_process import ROOT, ServiceProcess

SCHEMA = json.loads((ROOT / "tests/data/ghz/report.schema.json").read_text())
MAX_QUEUED = 12
SMALL = {
    "prompt": "a red ball",
    "resolution": "480p",
    "aspect_ratio": "1:1",
    "number_of_frames": 9,
    "number_of_steps": 2,
    "frame_rate": 12,
    "seed": 7,
}


def _loadgen(output: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "service.client.loadgen", *args, "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(output.read_text())
    jsonschema.validate(report, SCHEMA)
    return report


def test_submit_and_status_reports(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    service = ServiceProcess(tmp_path / "data", ["--workers", "0", "--max-queued", str(MAX_QUEUED)])
    service.start()
    try:
        host = f"127.0.0.1:{service.grpc_port}"
        first = service.submit("ltx-video-lora", SMALL).request_id
        submit = _loadgen(
            tmp_path / "submit.json",
            "--config",
            "loadtest/submit.json",
            "--host",
            host,
            "--total",
            "30",
            "--concurrency",
            "4",
        )
        assert submit["count"] == 30 and submit["endReason"] == "normal"
        accepted = MAX_QUEUED - 1
        assert submit["statusCodeDistribution"] == {"OK": accepted, "ResourceExhausted": 30 - accepted}
        assert all("code = ResourceExhausted" in error for error in submit["errorDistribution"])
        assert submit["options"]["call"] == "ltx.v1.VideoGeneration.Submit"
        assert len(submit["details"]) == 30

        status = _loadgen(
            tmp_path / "status.json",
            "--config",
            "loadtest/status.json",
            "--host",
            host,
            "--data",
            json.dumps({"request_id": first}),
            "--duration",
            "1s",
            "--concurrency",
            "2",
        )
        assert status["endReason"] == "timeout" and status["count"] > 0
        assert status["statusCodeDistribution"] == {"OK": status["count"]}
        assert 0 < status["fastest"] <= status["slowest"]
    finally:
        service.stop()
