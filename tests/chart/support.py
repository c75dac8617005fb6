"""Render the chart offline with helm-python-sdk and walk the objects it produces."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ltx-video"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
KUBE_VERSIONS = ("1.27.0", "1.30.0", "1.33.0")
RELEASE, NAMESPACE = "rel", "ltx"

helm = __import__("helm_python")


def example_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object of every .yaml template (the test hook included), in template order."""
    chart = helm.Chart.load(str(CHART))
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    objects: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".yaml"):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


@functools.cache
def _rendered_example(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(example_values(CHART / "examples" / name)))


def rendered(example: Path) -> list[dict[str, Any]]:
    return list(_rendered_example(example.name))


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, pod template metadata, pod spec) of each Deployment."""
    for deployment in of_kind(objects, "Deployment"):
        template = deployment["spec"]["template"]
        yield deployment["metadata"]["name"], template["metadata"], template["spec"]


def container(spec: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((c for c in spec["containers"] if c["name"] == name), None)


def service_config_toml(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (config_map,) = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-config")]
    return tomllib.loads(config_map["data"]["ltx.toml"])
