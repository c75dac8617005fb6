"""Policy over the rendered objects: GPUs, probes, selectors, images, hardening, Secrets, drain time."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from service.server import LIVENESS, READINESS
from tests.chart.support import CHART, EXAMPLES, container, of_kind, pod_specs, rendered, service_config_toml

SENSITIVE_ENV = re.compile(r"PASSWORD|SECRET|TOKEN|DSN|DATABASE_URL|API_KEY|ACCESS_KEY", re.IGNORECASE)
MARGIN_S = 5


def _all_pods(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = [spec for _, _, spec in pod_specs(objects)]
    return specs + [p["spec"] for p in of_kind(objects, "Pod")]


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("example", ["scaled.yaml", "embedded.yaml"])
def test_gpu_limits_on_the_gpu_pods(example: str) -> None:
    objects = rendered(CHART / "examples" / example)
    for name, _, spec in pod_specs(objects):
        if name.endswith("-gateway"):
            assert not any("nvidia.com/gpu" in c["resources"].get("limits", {}) for c in spec["containers"])
            continue
        triton = container(spec, "tritonserver")
        assert triton is not None and int(triton["resources"]["limits"]["nvidia.com/gpu"]) >= 1, name
        assert spec["tolerations"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
        assert spec["nodeSelector"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_distinct_grpc_liveness_and_readiness_probes(example: Path) -> None:
    for name, _, spec in pod_specs(rendered(example)):
        serve = container(spec, "ltx-serve")
        assert serve is not None
        live, ready = serve["livenessProbe"]["grpc"], serve["readinessProbe"]["grpc"]
        assert (live["service"], ready["service"]) == (LIVENESS, READINESS), name
        assert serve["startupProbe"]["grpc"]["service"] == LIVENESS
        triton = container(spec, "tritonserver")
        if triton is not None:
            assert triton["livenessProbe"]["httpGet"]["path"] != triton["readinessProbe"]["httpGet"]["path"]
            startup = triton["startupProbe"]
            assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, (
                "TensorRT engines load for minutes"
            )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_selectors_match_pod_labels(example: Path) -> None:
    objects = rendered(example)
    pods = {name: meta["labels"] for name, meta, _ in pod_specs(objects)}
    for deployment in of_kind(objects, "Deployment"):
        assert _matches(deployment["spec"]["selector"]["matchLabels"], pods[deployment["metadata"]["name"]])
    for service in of_kind(objects, "Service"):
        assert any(_matches(service["spec"]["selector"], labels) for labels in pods.values()), service[
            "metadata"
        ]
    for pdb in of_kind(objects, "PodDisruptionBudget"):
        assert any(_matches(pdb["spec"]["selector"]["matchLabels"], labels) for labels in pods.values())
    for scaler in of_kind(objects, "HorizontalPodAutoscaler") + of_kind(objects, "ScaledObject"):
        assert scaler["spec"]["scaleTargetRef"]["name"] in pods
    services = {s["metadata"]["name"]: s["metadata"]["labels"] for s in of_kind(objects, "Service")}
    for monitor in of_kind(objects, "ServiceMonitor"):
        assert any(
            _matches(monitor["spec"]["selector"]["matchLabels"], labels) for labels in services.values()
        )
    for policy in of_kind(objects, "NetworkPolicy"):
        assert all(_matches(policy["spec"]["podSelector"]["matchLabels"], labels) for labels in pods.values())


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_images_are_pinned_and_pods_hardened(example: Path) -> None:
    for spec in _all_pods(rendered(example)):
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in spec["containers"]:
            image = c["image"]
            assert "@sha256:" in image or re.search(r":[\w.-]+$", image.rsplit("/", 1)[-1]), image
            assert not image.endswith(":latest"), image
            context = c["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["runAsNonRoot"] is True
            assert "ALL" in context["capabilities"]["drop"]
    for account in of_kind(rendered(example), "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_secrets_only_by_reference(example: Path) -> None:
    objects = rendered(example)
    assert not of_kind(objects, "Secret"), "the chart must not create Secrets"
    for spec in _all_pods(objects):
        for c in spec["containers"]:
            for env in c.get("env", []):
                if SENSITIVE_ENV.search(env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), env
            assert not any(re.search(r"://[^/\s$]+:[^@\s]+@", a) for a in c.get("args", [])), c["args"]
    text = str([o["data"] for o in of_kind(objects, "ConfigMap")])
    assert not re.search(r"postgres(ql)?://|AWS_SECRET|BEGIN [A-Z ]*PRIVATE KEY", text)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_termination_grace_covers_prestop_drain_and_margin(example: Path) -> None:
    objects = rendered(example)
    drain_s = float(service_config_toml(objects)["shutdown"]["grace_s"])
    for name, _, spec in pod_specs(objects):
        grace = spec["terminationGracePeriodSeconds"]
        for c in spec["containers"]:
            command = c["lifecycle"]["preStop"]["exec"]["command"]
            assert command[0] == "sleep"
            sleep_s = float(command[1])
            needed = sleep_s + (drain_s if c["name"] == "ltx-serve" else 0) + MARGIN_S
            assert grace >= needed, (
                f"{name}/{c['name']}: grace {grace} < preStop {sleep_s} + drain + {MARGIN_S}"
            )


def test_embedded_keeps_sqlite_on_the_pvc() -> None:
    objects = rendered(CHART / "examples" / "embedded.yaml")
    ((_, _, spec),) = list(pod_specs(objects))
    (claim,) = of_kind(objects, "PersistentVolumeClaim")
    data = next(v for v in spec["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    serve = container(spec, "ltx-serve")
    assert serve is not None
    mount = next(m for m in serve["volumeMounts"] if m["name"] == "data")
    assert mount["mountPath"] == service_config_toml(objects)["data_dir"]
