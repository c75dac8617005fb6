"""The chart runs what the package installs: the console script, flags `ltx-serve --help` knows, a
config file `load_config` accepts, and ports and probe names the service really uses."""

from __future__ import annotations

import contextlib
import io
import re
import tomllib
from pathlib import Path

import pytest

from service.config import load_config
from service.main import parse_args
from service.server import LIVENESS, READINESS
from tests.chart.support import EXAMPLES, ROOT, container, of_kind, pod_specs, rendered, service_config_toml

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _help_flags() -> set[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        parse_args(["--help"])
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", out.getvalue()))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_command_and_flags_are_ltx_serve_s(example: Path) -> None:
    assert PYPROJECT["project"]["scripts"]["ltx-serve"] == "service.main:main"
    flags = _help_flags()
    for name, _, spec in pod_specs(rendered(example)):
        serve = container(spec, "ltx-serve")
        assert serve is not None and serve["command"] == ["ltx-serve"], name
        used = {arg.split("=", 1)[0] for arg in serve["args"] if arg.startswith("--")}
        assert used <= flags, f"{name}: flags ltx-serve --help does not list: {sorted(used - flags)}"
        parse_args(serve["args"])  # exits (fails the test) on a bad value too


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_rendered_config_loads_and_ports_match(example: Path, tmp_path: Path) -> None:
    objects = rendered(example)
    (config_map,) = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-config")]
    path = tmp_path / "ltx.toml"
    path.write_text(config_map["data"]["ltx.toml"])
    config = load_config(path)  # unknown settings or sections raise
    assert service_config_toml(objects)["host"] == config.host == "0.0.0.0"
    for name, _, spec in pod_specs(objects):
        serve = container(spec, "ltx-serve")
        assert serve is not None
        ports = {p["name"]: p["containerPort"] for p in serve["ports"]}
        assert ports["grpc"] == config.port and ports["admin"] == config.admin_port, name
        if "metrics" in ports:
            assert ports["metrics"] == config.metrics.port
        if "http" in ports:
            assert ports["http"] == config.http_port
        for probe, service in (
            ("startupProbe", LIVENESS),
            ("livenessProbe", LIVENESS),
            ("readinessProbe", READINESS),
        ):
            assert serve[probe]["grpc"] == {"port": config.admin_port, "service": service}
        mounts = {m["mountPath"] for m in serve["volumeMounts"]}
        assert config.data_dir in mounts
        for setting in (
            config.auth.api_keys_file,
            config.auth.tls_cert_file,
            config.auth.url_signing_key_file,
        ):
            if setting:
                assert any(setting.startswith(m + "/") for m in mounts), setting
        triton = container(spec, "tritonserver")
        if triton is not None:
            triton_grpc = next(p["containerPort"] for p in triton["ports"] if p["name"] == "triton-grpc")
            assert config.triton_url == f"127.0.0.1:{triton_grpc}"


def test_secret_backed_env_vars_are_the_ones_ltx_serve_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    (deployment, *_) = [
        d for d in of_kind(rendered(ROOT / "helm/ltx-video/examples/scaled.yaml"), "Deployment")
    ]
    serve = container(deployment["spec"]["template"]["spec"], "ltx-serve")
    assert serve is not None
    (dsn,) = [e for e in serve["env"] if "secretKeyRef" in e.get("valueFrom", {}) and "DATABASE" in e["name"]]
    monkeypatch.setenv(dsn["name"], "postgresql://u:p@db/ltx")
    assert parse_args(serve["args"]).database_url == "postgresql://u:p@db/ltx"
