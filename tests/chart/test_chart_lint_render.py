"""`helm lint --strict` and `helm template` through helm-python-sdk, on every example values file,
and the values schema refusing what it must."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.support import (
    CHART,
    EXAMPLES,
    KUBE_VERSIONS,
    example_values,
    helm,
    of_kind,
    render,
    rendered,
)


def test_chart_has_no_dependencies_and_needs_kubernetes_1_27() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert "dependencies" not in chart
    assert chart["kubeVersion"] == ">=1.27.0-0"


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_strict_lint_is_clean(example: Path, kube_version: str) -> None:
    report = helm.lint(str(CHART), example_values(example), strict=True, kube_version=f"v{kube_version}")
    assert report["errors"] == [], report["messages"]


def test_default_values_lint_clean() -> None:
    assert helm.lint(str(CHART), None, strict=True, kube_version="v1.27.0")["errors"] == []


def _kinds(objects: list[dict[str, Any]]) -> set[str]:
    return {o["kind"] for o in objects}


def test_embedded_renders_one_recreate_pod_with_a_pvc_and_triton() -> None:
    objects = rendered(CHART / "examples" / "embedded.yaml")
    (deployment,) = of_kind(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    names = [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert names == ["ltx-serve", "tritonserver"]
    assert {"PersistentVolumeClaim", "ServiceMonitor", "NetworkPolicy"} <= _kinds(objects)
    assert not {"HorizontalPodAutoscaler", "ScaledObject", "PodDisruptionBudget"} & _kinds(objects)


def test_scaled_renders_gateway_hpa_pdbs_and_keda_workers() -> None:
    objects = rendered(CHART / "examples" / "scaled.yaml")
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
    assert set(deployments) == {"rel-ltx-video-gateway", "rel-ltx-video-worker"}
    (hpa,) = of_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rel-ltx-video-gateway"
    assert {p["metadata"]["name"] for p in of_kind(objects, "PodDisruptionBudget")} == set(deployments)
    (scaled_object,) = of_kind(objects, "ScaledObject")
    trigger = scaled_object["spec"]["triggers"][0]
    assert trigger["type"] == "postgresql" and "'queued', 'running'" in trigger["metadata"]["query"]
    assert "PersistentVolumeClaim" not in _kinds(objects)


def test_scaled_hpa_variant_scales_workers_on_an_external_metric() -> None:
    objects = rendered(CHART / "examples" / "scaled-hpa.yaml")
    assert not of_kind(objects, "ScaledObject")
    worker_hpa = [
        h for h in of_kind(objects, "HorizontalPodAutoscaler") if h["metadata"]["name"].endswith("-worker")
    ]
    (metric,) = worker_hpa[0]["spec"]["metrics"]
    assert (
        metric["type"] == "External" and metric["external"]["metric"]["name"] == "ltx_jobs_queued_and_running"
    )


REJECTED: dict[str, tuple[dict[str, Any], str]] = {
    "typo key": ({"replicaCoutn": 2}, "replicaCoutn"),
    "nested typo key": ({"gateway": {"replicas": 2}}, "replicas"),
    "unknown engine backend": ({"engine": "onnx"}, "/engine"),
    "unknown storage backend": ({"storage": {"backend": "gcs"}}, "/storage/backend"),
    "replicaCount 0": ({"gateway": {"replicaCount": 0}}, "/gateway/replicaCount"),
    "latest tag": ({"image": {"repository": "x/y", "tag": "latest"}}, "/image/tag"),
    "root filesystem writable": (
        {"securityContext": {"readOnlyRootFilesystem": False}},
        "readOnlyRootFilesystem",
    ),
    "scaled without a database Secret": ({"mode": "scaled", "storage": {"backend": "s3"}}, "existingSecret"),
}


@pytest.mark.parametrize("case", REJECTED, ids=list(REJECTED))
def test_schema_rejects(case: str) -> None:
    values, named = REJECTED[case]
    report = helm.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
    assert any(named in error for error in report["errors"]), report
    with pytest.raises(helm.HelmError) as caught:
        render(values)
    assert named in str(caught.value)


def test_termination_grace_shorter_than_the_drain_fails_the_render() -> None:
    with pytest.raises(helm.HelmError, match="terminationGracePeriodSeconds 20 is less than"):
        render({"embedded": {"terminationGracePeriodSeconds": 20}})


def _leaf_keys(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        return [key for k, v in node.items() for key in _leaf_keys(v, f"{prefix}.{k}" if prefix else k)]
    return [prefix]


def test_readme_values_table_covers_every_top_level_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.MULTILINE))
    for key in _leaf_keys(values):
        assert any(key == d or key.startswith(d + ".") for d in documented), (
            f"{key} missing from the README table"
        )
