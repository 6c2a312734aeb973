"""The real Kubernetes manifests, run by `podman kube play`: the users
Deployment of the rendered base (``kubectl kustomize k8s``) with its ConfigMap
and the dev Secret, against the embedded PostgreSQL. It proves what the
manifests say and a schema check cannot: the command starts the image, the
ConfigMap and Secret wire its settings, the security context (uid 10001,
read-only root, /tmp an emptyDir, no capabilities) and the resource limits let
it serve, and the probes' paths and ports answer.

What is changed, and why (podman 4.3 here; each a property of podman, not of
the manifests):
- the image tag: the Deployment says ``goshop-users:<version>`` (what ``kind load``
  loads; Tilt rewrites it); the image run here is the same build's ``goshop-users:dev``;
- a ``hostPort`` per containerPort, a free one: podman publishes every
  containerPort on the host (8081 would collide), and the test reaches the pod
  through them, as ``kubectl port-forward`` would;
- the network: slirp4netns with the host's loopback reachable as 10.0.2.2, where
  the embedded PostgreSQL listens (127.0.0.1 only); host networking refuses
  containerPorts;
- the Secret: podman 4.3 stores a Secret object from the YAML in a form it then
  cannot read ("secret ... is not valid JSON"), so the same data is created as a
  podman secret in the form its secretKeyRef lookup reads (a JSON map of
  base64 values), under a name of its own, the Deployment pointing at it;
- the database URL in it: the test database, seen from the pod (as the Secret's
  role, with its development password);
- the ulimits: as for every container here (PODMAN_RUN_FLAGS), given through a
  containers.conf, kube play having no --ulimit.
Not run by podman, so checked by the test itself: the probes. podman turns a
livenessProbe into a healthcheck that runs curl (not in the image) on port 0
(a named port is not resolved) and schedules it with systemd (absent);
readinessProbes it ignores.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from goshop_devtools.postgres import free_port
from tests.containers.conftest import PODMAN_RUN_FLAGS, ROOT

# The host's 127.0.0.1 as a slirp4netns pod sees it (allow_host_loopback).
HOST_LOOPBACK = "10.0.2.2"
NETWORK = "slirp4netns:allow_host_loopback=true"
STARTUP_TIMEOUT = 90.0


def _podman(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args],  # noqa: S607 (podman from PATH, as the engine fixture found it)
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def rendered_base() -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the manifests cannot be rendered")
    result = subprocess.run(
        [kubectl, "kustomize", "k8s"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def ulimits_conf(path: Path) -> Path:
    flags = list(PODMAN_RUN_FLAGS)
    ulimits = [flags[i + 1] for i, flag in enumerate(flags) if flag == "--ulimit"]
    path.write_text(f"[containers]\ndefault_ulimits = {json.dumps(ulimits)}\n")
    return path


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except OSError:
        return 0, b""


class Played:
    """One Deployment with its ConfigMaps and Secret, played and taken down."""

    def __init__(self, objects: list[dict], deployment: str, image: str, database_url: str, tmp_path: Path):
        suffix = uuid.uuid4().hex[:6]
        (self.deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment]
        self.deployment["metadata"]["name"] = f"{deployment}-{suffix}"
        pod = self.deployment["spec"]["template"]["spec"]
        (self.container,) = pod["containers"]
        self.container["image"] = image
        self.host_ports: dict[str, int] = {}
        for port in self.container.get("ports", []):
            port["hostPort"] = self.host_ports[port["name"]] = free_port()
        configmaps = {c["configMapRef"]["name"] for c in self.container.get("envFrom", []) if "configMapRef" in c}
        self.configmaps = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] in configmaps]
        assert {c["metadata"]["name"] for c in self.configmaps} == configmaps, "a configMapRef names no ConfigMap"
        refs = [
            e["valueFrom"]["secretKeyRef"]
            for e in self.container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        ]
        (secret_name,) = {ref["name"] for ref in refs}
        (secret,) = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == secret_name]
        values = {
            **{k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()},
            **secret.get("stringData", {}),
        }
        assert {ref["key"] for ref in refs} <= set(values), "a secretKeyRef names a key the Secret lacks"
        # The test database, seen from the pod, as the Secret's own role.
        own = sa.make_url(values["GOSHOP_DATABASE_URL"])
        values["GOSHOP_DATABASE_URL"] = (
            sa.make_url(database_url)
            .set(host=HOST_LOOPBACK, username=own.username, password=own.password)
            .render_as_string(hide_password=False)
        )
        self.secret = f"{secret_name}-{suffix}"
        for ref in refs:
            ref["name"] = self.secret
        self.secret_file = tmp_path / "secret.json"
        self.secret_file.write_text(json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in values.items()}))
        self.manifest = tmp_path / "play.yaml"
        self.manifest.write_text(yaml.safe_dump_all([*self.configmaps, self.deployment]))
        self.env = {**os.environ, "CONTAINERS_CONF": str(ulimits_conf(tmp_path / "containers.conf"))}
        self.pod = f"{self.deployment['metadata']['name']}-pod-0"
        self.container_name = f"{self.pod}-{self.container['name']}"

    def play(self) -> None:
        created = _podman("secret", "create", self.secret, str(self.secret_file))
        assert created.returncode == 0, created.stderr
        played = _podman("kube", "play", "--network", NETWORK, str(self.manifest), env=self.env)
        assert played.returncode == 0, f"podman kube play: {played.stderr}"

    def down(self) -> None:
        _podman("kube", "down", str(self.manifest), env=self.env)
        _podman("secret", "rm", self.secret)

    def logs(self) -> str:
        result = _podman("logs", self.container_name)
        return (result.stdout + result.stderr)[-3000:]

    def inspect(self, template: str) -> str:
        return _podman("inspect", "--format", template, self.container_name).stdout.strip()

    def probe_port(self, probe: dict) -> int:
        port = probe["httpGet"]["port"]
        if isinstance(port, int):
            (name,) = [p["name"] for p in self.container["ports"] if p["containerPort"] == port]
            port = name
        return self.host_ports[port]


@pytest.fixture
def users_played(engine, images, database_url, tmp_path):
    if engine != "podman":
        pytest.skip("`kube play` is podman's")
    played = Played(rendered_base(), "users", images["users"], database_url, tmp_path)
    try:
        played.play()
        yield played
    finally:
        played.down()


def test_the_users_deployment_serves_its_probes_with_its_configmap_and_secret(users_played):
    played = users_played
    container = played.container
    probes = {kind: container[kind] for kind in ("readinessProbe", "livenessProbe")}
    deadline = time.monotonic() + STARTUP_TIMEOUT
    answered: dict[str, int] = {}
    while time.monotonic() < deadline and len(answered) < len(probes):
        for kind, probe in probes.items():
            if kind not in answered and get(played.probe_port(probe), probe["httpGet"]["path"])[0] == 200:
                answered[kind] = int(STARTUP_TIMEOUT - (deadline - time.monotonic()))
        assert played.inspect("{{.State.Status}}") == "running", played.logs()
        time.sleep(0.5)
    assert set(answered) == set(probes), (
        f"probes never answered 200: {sorted(set(probes) - set(answered))}\n{played.logs()}"
    )
    seen = ", ".join(f"{kind} {probes[kind]['httpGet']['path']} 200 after {s} s" for kind, s in answered.items())
    print(f"\nkube play users: {seen}")
    # The readiness probe's 200 is the Secret's database URL at work; the ConfigMap's
    # development mode generated its signing key under the read-only root's /tmp.
    status, body = get(played.host_ports["http"], "/.well-known/jwks.json")
    assert status == 200, body
    assert json.loads(body)["keys"], body
    # Prometheus scrapes the pod where its annotations say.
    annotations = played.deployment["spec"]["template"]["metadata"]["annotations"]
    (metrics_port,) = [
        p["name"] for p in container["ports"] if str(p["containerPort"]) == annotations["prometheus.io/port"]
    ]
    status, body = get(played.host_ports[metrics_port], annotations["prometheus.io/path"])
    assert status == 200
    assert b"goshop_" in body
    # What the manifest's security context and limits became.
    assert played.inspect("{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.EffectiveCaps}}") == "10001:10001 true []"
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Mi"), limit
    assert played.inspect("{{.HostConfig.Memory}}") == str(int(limit[:-2]) * 2**20)
