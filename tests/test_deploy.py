"""The deployment files (issue 8), checked offline: no container registry or cluster is reachable
here, so the image cannot be built; these checks stand in for it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from proxy.metrics import Metrics
from proxy.server.app import create_admin_app
from proxy.server.state import ServerState
from proxy.settings import Settings, load_settings
from proxy.simulator import create_app as create_simulator_app

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
BIN = Path(sys.executable).parent
# Native sidecars (restartPolicy on an init container) are in the schema from 1.29; None is the
# newest schema kubernetes-validate ships, so a field removed since 1.29 is caught too.
K8S_VERSIONS = ["1.29.0", None]
ADMIN_PATHS = {"/healthz", "/readyz", "/metrics"}


# ---------------------------------------------------------------- helpers


def kustomize_resources() -> list[Path]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [K8S / name for name in kustomization["resources"]]


def documents() -> list[dict[str, Any]]:
    return [d for p in kustomize_resources() for d in yaml.safe_load_all(p.read_text()) if d]


def only(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in documents() if d["kind"] == kind]
    return doc


def pod_spec() -> dict[str, Any]:
    return only("Deployment")["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def proxy_container() -> dict[str, Any]:
    (c,) = [c for c in pod_spec()["initContainers"] if c["name"] == "legacy-stream-proxy"]
    return c


def app_container() -> dict[str, Any]:
    (c,) = [c for c in pod_spec()["containers"] if c["name"] == "app"]
    return c


def strictly_valid(path: Path, version: str | None = K8S_VERSIONS[0]) -> tuple[bool, str]:
    """kubernetes-validate --strict, where a warning (a kind without a schema) is a failure too:
    on its own the tool prints the warning and exits 0."""
    command = [str(BIN / "kubernetes-validate"), "--strict", str(path)]
    if version is not None:
        command[2:2] = ["--kubernetes-version", version]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    ok = (
        result.returncode == 0
        and "passed" in output
        and not re.search(r"\b(WARN|ERROR|FATAL)\b", output)
    )
    return ok, output


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"use the exec form: {args}"
    return [str(v) for v in value]


def instruction(word: str) -> str:
    (args,) = [a for w, a in dockerfile_instructions() if w == word]
    return args


def copies() -> list[tuple[str, list[str], str]]:
    """(WORKDIR at that point, sources, destination) for every COPY from the build context."""
    workdir = "/"
    out = []
    for word, args in dockerfile_instructions():
        if word == "FROM":
            workdir = "/"
        elif word == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / args)
        elif word == "COPY" and "--from" not in args:
            *sources, dest = [a for a in args.split() if not a.startswith("--")]
            out.append((workdir, sources, dest))
    return out


def entry_point() -> list[str]:
    return exec_form(instruction("ENTRYPOINT")) + exec_form(instruction("CMD"))


def config_path() -> PurePosixPath:
    argv = entry_point()
    return PurePosixPath(argv[argv.index("--config") + 1])


def settings_env_names() -> set[str]:
    defaults = Settings()
    names = set()
    for f in dataclasses.fields(Settings):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            names |= {
                f"LEGACY_PROXY_{f.name.upper()}_{sub.name.upper()}"
                for sub in dataclasses.fields(value)
            }
        else:
            names.add(f"LEGACY_PROXY_{f.name.upper()}")
    return names


def admin_paths() -> set[str]:
    return {
        r.resource.canonical
        for r in create_admin_app(Metrics(), ServerState()).router.routes()
        if r.resource is not None
    }


# ---------------------------------------------------------------- Kubernetes


def test_kustomization_lists_existing_resources() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    resources = kustomize_resources()
    assert resources
    for path in resources:
        assert path.is_file(), path
    listed = {p.name for p in resources}
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, "a manifest is not in kustomization.yaml, or the reverse"
    assert {d["kind"] for d in documents()} == {"ConfigMap", "Deployment"}


@pytest.mark.parametrize("version", K8S_VERSIONS, ids=lambda v: v or "newest")
@pytest.mark.parametrize("path", kustomize_resources(), ids=lambda p: p.name)
def test_manifest_validates_strictly(path: Path, version: str | None) -> None:
    ok, output = strictly_valid(path, version)
    assert ok, output


def test_the_validator_rejects_a_misspelled_field(tmp_path: Path) -> None:
    text = (K8S / "deployment.yaml").read_text()
    bad = tmp_path / "deployment.yaml"
    bad.write_text(text.replace("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", 1))
    assert strictly_valid(K8S / "deployment.yaml")[0]
    assert not strictly_valid(bad)[0]


def test_a_kind_without_a_schema_fails(tmp_path: Path) -> None:
    """The tool only warns about a kind it cannot check; the tests count that as a failure."""
    unknown = tmp_path / "widget.yaml"
    unknown.write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")
    ok, output = strictly_valid(unknown)
    assert not ok and "WARN" in output


def test_native_sidecar_needs_a_1_29_schema() -> None:
    assert proxy_container()["restartPolicy"] == "Always"
    assert strictly_valid(K8S / "deployment.yaml", "1.29.0")[0]
    ok, output = strictly_valid(K8S / "deployment.yaml", "1.27.0")
    assert not ok and "restartPolicy" in output


@pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl is not installed: the kustomize build is not rendered; "
    "each resource it lists is still validated on its own above",
)
def test_kustomize_build_renders_and_validates(tmp_path: Path) -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=120
    )
    assert rendered.returncode == 0, rendered.stderr
    out = tmp_path / "rendered.yaml"
    out.write_text(rendered.stdout)
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered.stdout) if d)
    assert kinds == ["ConfigMap", "Deployment"]
    ok, output = strictly_valid(out)
    assert ok, output


def test_configmap_config_loads_with_the_proxys_loader(tmp_path: Path) -> None:
    cm = only("ConfigMap")
    assert set(cm["data"]) == {config_path().name}
    path = tmp_path / config_path().name
    path.write_text(cm["data"][config_path().name])
    settings = load_settings(path, {})
    defaults = Settings()
    assert (settings.host, settings.port) == (defaults.host, defaults.port)
    assert (settings.admin_host, settings.admin_port) == (defaults.admin_host, defaults.admin_port)
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert grace > settings.shutdown.drain_seconds


def test_the_configmap_is_mounted_where_the_image_reads_it() -> None:
    c = proxy_container()
    assert c.get("args", exec_form(instruction("CMD"))) == exec_form(instruction("CMD"))
    assert "command" not in c  # keep the image's ENTRYPOINT: python -m proxy
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == str(config_path().parent)]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod_spec()["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == only("ConfigMap")["metadata"]["name"]


def test_ports_paths_and_env_match_the_proxy() -> None:
    defaults = Settings()
    assert admin_paths() >= ADMIN_PATHS
    c = proxy_container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"proxy": defaults.port, "admin": defaults.admin_port}
    probes = {
        name: c[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert {name: (p["port"], p["path"]) for name, p in probes.items()} == {
        "startupProbe": ("admin", "/healthz"),
        "livenessProbe": ("admin", "/healthz"),
        "readinessProbe": ("admin", "/readyz"),
    }
    for env in c.get("env", []):
        assert env["name"] in settings_env_names(), env["name"]
    annotations = only("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(defaults.admin_port),
        "prometheus.io/path": "/metrics",
    }
    # the application talks to the sidecar over the pod's loopback, under both SDK spellings
    app_env = {e["name"]: e.get("value") for e in app_container()["env"]}
    for name in ("ANTHROPIC_API_URL", "ANTHROPIC_BASE_URL"):
        url = urlsplit(app_env[name])
        assert (url.scheme, url.hostname, url.port) == ("http", "localhost", defaults.port), name


def test_security_context_and_no_secret() -> None:
    spec = pod_spec()
    assert spec["enableServiceLinks"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    # complete on the container, so it survives being copied into another pod spec
    assert proxy_container()["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    user, _, group = instruction("USER").partition(":")
    assert (int(user), int(group)) == (10001, 10001)
    assert not [d for d in documents() if d["kind"] == "Secret"]
    resources = proxy_container()["resources"]
    assert set(resources) == {"requests", "limits"}
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


# ---------------------------------------------------------------- the image


def test_dockerfile_lints_clean() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dockerfile_shape() -> None:
    froms = [a for w, a in dockerfile_instructions() if w == "FROM"]
    assert len(froms) == 2 and all("-slim" in f for f in froms), "multi-stage, slim"
    assert entry_point() == ["python", "-m", "proxy", "--config", str(config_path())]
    assert config_path() == PurePosixPath("/etc/legacy-stream-proxy/proxy.toml")
    defaults = Settings()
    assert instruction("EXPOSE").split() == [str(defaults.port), str(defaults.admin_port)]
    check = instruction("HEALTHCHECK")
    (url,) = re.findall(r"http://[^'\"\s]+", check)
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, parts.path) == (
        "127.0.0.1",
        defaults.admin_port,
        "/healthz",
    )
    assert parts.path in admin_paths()
    assert "curl" not in check and "wget" not in check  # neither is in the slim image


def test_dockerfile_copies_real_paths() -> None:
    assert copies()
    for _workdir, sources, _dest in copies():
        for src in sources:
            assert (ROOT / src).exists(), src


def test_the_copied_files_are_enough_to_run(tmp_path: Path) -> None:
    """Lay out what the COPY lines put in the image and run the proxy's code from there alone."""
    image = tmp_path / "image"
    for workdir, sources, dest in copies():
        target = PurePosixPath(workdir) / dest
        for src in sources:
            path = ROOT / src
            to = image / target.relative_to("/")
            if dest.endswith("/") or len(sources) > 1:
                to = to / path.name
            to.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.copytree(path, to, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(path, to)
    config = image / config_path().relative_to("/")
    # pip install . in the build stage needs the readme pyproject.toml names
    assert (image / "src" / "pyproject.toml").is_file() and (image / "src" / "README.md").is_file()
    script = (
        "import sys, pathlib, proxy, proxy.__main__, proxy.simulator; "
        "from proxy.settings import load_settings; "
        "load_settings(pathlib.Path(sys.argv[1]), {}); print(proxy.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(config)],
        cwd=image / "src", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(image), "imported the checkout, not the copy"


# ---------------------------------------------------------------- compose


def test_compose_file_parses_and_matches() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"simulator", "proxy"}
    sim, proxy = services["simulator"], services["proxy"]
    for service in (sim, proxy):
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert (COMPOSE.parent / service["build"]["context"] / "deploy" / "Dockerfile").is_file()
    assert sim["image"] == proxy["image"]

    assert sim["entrypoint"] == ["python", "-m", "proxy.simulator"]
    command = sim["command"]
    sim_port = int(command[command.index("--port") + 1])
    assert command[command.index("--host") + 1] == "0.0.0.0"
    help_text = subprocess.run(
        [sys.executable, "-m", "proxy.simulator", "--help"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    ).stdout  # fmt: skip
    for flag in [a for a in command if a.startswith("--")]:
        assert flag in help_text, f"the simulator has no {flag}"
    # the simulator's health check asks a route it serves, on the port it listens on
    (url,) = re.findall(r"http://[^'\"\s]+", " ".join(sim["healthcheck"]["test"]))
    sim_routes = {
        r.resource.canonical
        for r in create_simulator_app().router.routes()
        if r.resource is not None and r.method == "GET"
    }
    assert urlsplit(url).port == sim_port and urlsplit(url).path in sim_routes

    assert proxy["depends_on"]["simulator"]["condition"] == "service_healthy"
    env = {k: str(v) for k, v in proxy["environment"].items()}
    assert set(env) <= settings_env_names()
    settings = load_settings(None, env)
    assert settings.host == "0.0.0.0"
    assert settings.upstream_url == f"http://simulator:{sim_port}"
    published = {int(p.rsplit(":", 1)[1]) for p in proxy["ports"]}
    assert published == {settings.port, settings.admin_port}
