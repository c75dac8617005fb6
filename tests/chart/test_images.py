"""The Dockerfiles agree with the chart and the entry points (images cannot be built here: the base
images are not pullable on this machine; these checks read the files)."""

from __future__ import annotations

import json
import re

from service.main import parse_args
from tests.chart.support import CHART, ROOT, container, pod_specs, rendered

SERVICE = (ROOT / "docker/service.Dockerfile").read_text()
TRITON = (ROOT / "docker/triton.Dockerfile").read_text()


def _instruction(text: str, name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(name + " ")]


def test_service_image_runs_ltx_serve_with_flags_it_has() -> None:
    assert json.loads(_instruction(SERVICE, "ENTRYPOINT")[-1]) == ["ltx-serve"]
    args = parse_args(json.loads(_instruction(SERVICE, "CMD")[-1]))
    exposed = {int(p) for p in _instruction(SERVICE, "EXPOSE")[-1].split()}
    assert {args.admin_port, args.metrics_port, 50051, 8080} == exposed


def test_images_run_as_the_chart_s_user() -> None:
    (_, _, spec), *_ = list(pod_specs(rendered(CHART / "examples/embedded.yaml")))
    uid = spec["securityContext"]["runAsUser"]
    for text in (SERVICE, TRITON):
        assert _instruction(text, "USER")[-1] == f"{uid}:{spec['securityContext']['runAsGroup']}"


def test_triton_image_holds_the_model_repository_where_the_chart_looks() -> None:
    (_, _, spec), *_ = list(pod_specs(rendered(CHART / "examples/embedded.yaml")))
    triton = container(spec, "tritonserver")
    assert triton is not None and triton["command"] == ["tritonserver"]
    repository = next(a.split("=", 1)[1] for a in triton["args"] if a.startswith("--model-repository="))
    assert f"COPY model_repository {repository}" in TRITON
    assert (
        re.search(r"^FROM \$\{TRITON_IMAGE\}", TRITON, re.MULTILINE)
        and "nvcr.io/nvidia/tritonserver:" in TRITON
    )
    exposed = {int(p) for p in _instruction(TRITON, "EXPOSE")[-1].split()}
    assert exposed == {p["containerPort"] for p in triton["ports"]}
