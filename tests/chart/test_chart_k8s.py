"""Every rendered object is valid for Kubernetes 1.27, 1.30 and 1.33 (kubernetes-validate, strict:
unknown fields fail); CRD-backed objects against their published JSON schemas (tests/data/crd-schemas)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.chart.support import EXAMPLES, KUBE_VERSIONS, ROOT, of_kind, rendered

CRD_SCHEMAS = ROOT / "tests" / "data" / "crd-schemas"
CRD_SCHEMA_FILES = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor_v1.json",
}


def _crd_validator(obj: dict[str, Any]) -> jsonschema.protocols.Validator:
    schema = json.loads((CRD_SCHEMAS / CRD_SCHEMA_FILES[(obj["apiVersion"], obj["kind"])]).read_text())
    return jsonschema.validators.validator_for(schema)(schema)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_object_is_valid(example: Path, kube_version: str) -> None:
    checked = 0
    for obj in rendered(example):
        if (obj["apiVersion"], obj["kind"]) in CRD_SCHEMA_FILES:
            _crd_validator(obj).validate(obj)
        else:  # SchemaNotFoundError (an unknown or removed API) fails the test too
            kubernetes_validate.validate(obj, kube_version, strict=True)
        checked += 1
    assert checked >= 5


def test_strict_validation_catches_an_unknown_field() -> None:
    """The check above can fail: a misspelt probe field is refused on every version."""
    (deployment,) = of_kind(rendered(ROOT / "helm/ltx-video/examples/embedded.yaml"), "Deployment")
    broken = copy.deepcopy(deployment)
    serve = broken["spec"]["template"]["spec"]["containers"][0]
    serve["readinessProbes"] = serve.pop("readinessProbe")
    for version in KUBE_VERSIONS:
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, version, strict=True)


def test_crd_schemas_catch_wrong_types() -> None:
    objects = rendered(ROOT / "helm/ltx-video/examples/scaled.yaml")
    (scaled_object,) = copy.deepcopy(of_kind(objects, "ScaledObject"))
    scaled_object["spec"]["triggers"][0]["metadata"]["targetQueryValue"] = 2  # KEDA wants a string
    assert list(_crd_validator(scaled_object).iter_errors(scaled_object))
    (monitor,) = copy.deepcopy(of_kind(objects, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["interval"] = "15sec"
    assert list(_crd_validator(monitor).iter_errors(monitor))
