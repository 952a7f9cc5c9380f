"""The deployment files (issue 8), checked offline: no container registry or cluster is reachable
here, so the image cannot be built; these checks stand in for it.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.app import create_admin_app
from proxy.handlers import ServerState
from proxy.metrics import Metrics
from proxy.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
BIN = Path(sys.executable).parent
K8S_VERSION = "1.29.0"  # native sidecars (restartPolicy on an init container) need 1.29+


def kustomize_resources() -> list[Path]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [K8S / name for name in kustomization["resources"]]


def documents() -> list[dict[str, Any]]:
    return [d for p in kustomize_resources() for d in yaml.safe_load_all(p.read_text()) if d]


def pod_spec() -> dict[str, Any]:
    (deployment,) = [d for d in documents() if d["kind"] == "Deployment"]
    return deployment["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def proxy_container() -> dict[str, Any]:
    (c,) = [c for c in pod_spec()["initContainers"] if c["name"] == "legacy-stream-proxy"]
    return c


def validate(path: Path, version: str = K8S_VERSION) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "-k", version, str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_kustomization_lists_existing_resources() -> None:
    resources = kustomize_resources()
    assert resources
    for path in resources:
        assert path.is_file(), path
    listed = {p.name for p in resources}
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, "a manifest is not in kustomization.yaml, or the reverse"


@pytest.mark.parametrize("path", kustomize_resources(), ids=lambda p: p.name)
def test_manifest_validates_strictly(path: Path) -> None:
    result = validate(path)
    output = result.stdout + result.stderr
    # a kind it has no schema for only prints a warning and exits 0: count that as a failure
    assert result.returncode == 0 and "WARN" not in output and "ERROR" not in output, output
    assert "passed" in output


def test_the_validator_rejects_a_misspelled_field(tmp_path: Path) -> None:
    text = (
        (K8S / "deployment.yaml")
        .read_text()
        .replace("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", 1)
    )
    bad = tmp_path / "deployment.yaml"
    bad.write_text(text)
    assert validate(bad).returncode != 0


def test_native_sidecar_needs_a_1_29_schema() -> None:
    assert validate(K8S / "deployment.yaml", "1.27.0").returncode != 0
    assert proxy_container()["restartPolicy"] == "Always"


def test_configmap_config_loads_with_the_proxys_loader(tmp_path: Path) -> None:
    (cm,) = [d for d in documents() if d["kind"] == "ConfigMap"]
    path = tmp_path / "proxy.toml"
    path.write_text(cm["data"]["proxy.toml"])
    settings = load_settings(path, {})
    assert settings.port == Settings().port and settings.admin_port == Settings().admin_port
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert grace > settings.shutdown.drain_seconds


def test_ports_paths_and_env_match_the_proxy() -> None:
    defaults = Settings()
    c = proxy_container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"proxy": defaults.port, "admin": defaults.admin_port}
    admin_paths = {
        r.resource.canonical
        for r in create_admin_app(Metrics(), ServerState()).router.routes()
        if r.resource is not None
    }
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] == "admin"
        assert c[probe]["httpGet"]["path"] in admin_paths
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    known = {f"LEGACY_PROXY_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    for section in dataclasses.fields(Settings):
        value = getattr(defaults, section.name)
        if dataclasses.is_dataclass(value):
            known |= {
                f"LEGACY_PROXY_{section.name.upper()}_{f.name.upper()}"
                for f in dataclasses.fields(value)
            }
    for env in c.get("env", []):
        assert env["name"] in known, env["name"]
    annotations = yaml.safe_load((K8S / "deployment.yaml").read_text())["spec"]["template"][
        "metadata"
    ]["annotations"]
    assert annotations["prometheus.io/port"] == str(defaults.admin_port)
    assert annotations["prometheus.io/path"] in admin_paths
    app = next(c for c in pod_spec()["containers"] if c["name"] == "app")
    urls = [e.get("value", "") for e in app["env"]]
    assert f"http://localhost:{defaults.port}" in urls


def test_security_context_and_no_secret() -> None:
    spec = pod_spec()
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["enableServiceLinks"] is False
    sc = proxy_container()["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert not [d for d in documents() if d["kind"] == "Secret"]


def test_dockerfile_lints_clean_and_copies_real_paths() -> None:
    dockerfile = ROOT / "deploy" / "Dockerfile"
    result = subprocess.run(
        [str(BIN / "hadolint"), str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = dockerfile.read_text()
    copies = re.findall(r"^COPY (?!--from)(.+)$", text, re.M)
    assert copies
    for line in copies:
        *sources, _dest = line.split()
        for src in sources:
            assert (ROOT / src).exists(), src
    assert re.search(r"^USER 10001", text, re.M)
    assert "EXPOSE 8787 8788" in text
    assert "/healthz" in text


def test_compose_file_parses_and_matches() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"simulator", "proxy"}
    assert services["simulator"]["entrypoint"] == ["python", "-m", "proxy.simulator"]
    assert services["proxy"]["environment"]["LEGACY_PROXY_UPSTREAM_URL"] == "http://simulator:8700"
    assert (
        "--port" in services["simulator"]["command"] and "8700" in services["simulator"]["command"]
    )
    assert any(p.endswith(":8787:8787") for p in services["proxy"]["ports"])
    settings = load_settings(None, {k: str(v) for k, v in services["proxy"]["environment"].items()})
    assert settings.host == "0.0.0.0"
