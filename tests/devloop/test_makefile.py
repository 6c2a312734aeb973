"""The Makefile keeps the seed's targets and their meaning.

Every target the seed README lists must exist and do what the README says. No
Docker, kind or kubectl here: `make -n` prints a target's commands without running
them (recursive `$(MAKE)` lines run with -n too), so the tests read the commands.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from goshop_devtools.runner_lock import RunnerLock

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make") or "/usr/bin/make"
SERVICES = ("users", "orders", "outboxer", "payments", "gateway", "opsassistant")
# The tag k8s/ names every goshop image by (tests/devloop/test_k8s.py), and kind-load loads.
VERSION = re.search(r'^\s*version="([^"]+)",$', (ROOT / "setup.py").read_text(), re.M).group(1)

# The seed README's "Makefile команды", in its order.
SEED_TARGETS = (
    "dev-docker-only",
    "dev-docker-only-down",
    "dev-hybrid",
    "dev-hybrid-down",
    "docker-infra-up",
    "docker-infra-down",
    "k8s-kind-create",
    "k8s-kind-delete",
    "k8s-ingress-nginx-download",
    "k8s-ingress-nginx-install",
    "k8s-ingress-nginx-wait",
    "k8s-ingress-apply",
    "k8s-ingress-bootstrap",
    "k8s-portforward-ingress",
    *(
        target
        for svc in SERVICES
        for target in (
            f"{svc}-image",
            f"{svc}-kind-load",
            f"{svc}-build-and-load",
            f"k8s-{svc}-apply",
            f"k8s-{svc}-status",
            f"k8s-{svc}-logs",
        )
    ),
    "k8s-build-and-load-all",
    "k8s-apply-all",
    "k8s-bootstrap",
    "k8s-status-all",
    "k8s-clean",
    "k8s-redeploy-all",
)
# goshop's own targets, which must keep working next to the seed's.
OWN_TARGETS = (
    "help",
    "venv",
    "run",
    "test",
    "test-containers",
    "base-image",
    "images",
    "test-unit",
    "test-integration",
    "lint",
    "format",
    "migrate-status",
    "migrate-up",
    "bench",
    "bench-shop",
    "load",
    "gateway-routes",
    "clean-data",
    "clean",
    "tilt-up",
    "tilt-down",
)
# The flat manifests each service's apply target must name.
MANIFESTS = {
    "users": ["users-configmap", "users-deployment", "users-service", "users-migrate-job"],
    "orders": [
        "orders-configmap",
        "orders-deployment",
        "orders-service",
        "orders-consumer-deployment",
        "orders-migrate-job",
    ],
    "payments": [
        "payments-configmap",
        "payments-deployment",
        "payments-service",
        "payments-consumer-deployment",
        "payments-migrate-job",
    ],
    "outboxer": ["outboxer-configmap", "outboxer-deployment", "maintenance-configmap", "maintenance-deployment"],
    "gateway": ["gateway-configmap", "gateway-deployment", "gateway-service"],
    "opsassistant": ["opsassistant-configmap", "opsassistant-deployment", "opsassistant-service"],
}
INGRESS_URL = "https://raw.githubusercontent.com/kubernetes/ingress-nginx/controller-v1.15.1/deploy/static/provider/kind/deploy.yaml"
COMPOSE_ALL = "docker-compose -f docker/compose.infra.yml -f docker/compose.services.yml"
COMPOSE_INFRA = "docker-compose -f docker/compose.infra.yml"


@pytest.fixture(scope="module")
def bare_path(tmp_path_factory) -> str:
    """A PATH with make and nothing else: no docker, kind, kubectl or tilt."""
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "make").symlink_to(MAKE)
    return str(bin_dir)


def make(*args: str, env: dict | None = None, path: str | None = None) -> str:
    # The seed's commands are docker's; which engine a machine has is tested
    # on its own below.
    environ = {**os.environ, "MAKEFLAGS": "", "DOCKER": "docker", **(env or {})}
    environ = {name: value for name, value in environ.items() if value is not None}  # None: unset
    if path is not None:
        environ["PATH"] = path
    result = subprocess.run(
        [MAKE, "--no-print-directory", *args], cwd=ROOT, env=environ, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"make {' '.join(args)}: {result.stderr}"
    return result.stdout


def dry(target: str, **kwargs) -> str:
    return make("-n", target, **kwargs)


@pytest.mark.parametrize("target", SEED_TARGETS)
def test_every_seed_target_runs_dry_without_docker_kind_or_kubectl(target, bare_path):
    assert dry(target, path=bare_path).strip(), f"{target} does nothing"


def test_help_lists_every_target_once():
    lines = make("help").splitlines()
    listed = [line.split()[0] for line in lines if line.startswith("  ") and not line.startswith("   ")]
    for target in SEED_TARGETS + OWN_TARGETS:
        assert listed.count(target) == 1, f"make help lists {target} {listed.count(target)} times"


def test_help_is_the_default_goal():
    assert make() == make("help")


@pytest.mark.parametrize("svc", SERVICES)
def test_image_target_builds_the_services_dockerfile_target(svc):
    # The manifests' version tag, and :dev for compose and the container tier: one build.
    out = dry(f"{svc}-image")
    tags = f"-t goshop-{svc}:{VERSION} -t goshop-{svc}:dev"
    assert f"docker build -f docker/Dockerfile --target {svc}-app {tags} ." in out


@pytest.mark.parametrize("svc", SERVICES)
def test_image_target_builds_with_podman_when_asked(svc):
    out = dry(f"{svc}-image", env={"DOCKER": "podman"})
    assert f"podman build --isolation chroot --network host -f docker/Dockerfile --target {svc}-app" in out


def _engine_path(tmp_path, *engines: str) -> str:
    """A PATH with make and stand-ins for ``engines`` (``docker`` fails
    ``docker info``: a client without an engine, as on the build machines)."""
    (tmp_path / "make").symlink_to(MAKE)
    for engine in engines:
        script = tmp_path / engine
        script.write_text('#!/bin/sh\n[ "$1" = info ] && exit 1\nexit 0\n')
        script.chmod(0o755)
    return str(tmp_path)  # /bin/sh is named absolutely; nothing else is on the PATH


def test_the_engine_is_podman_where_no_docker_engine_answers(tmp_path):
    path = _engine_path(tmp_path, "docker", "podman")
    out = make("-n", "users-image", env={"DOCKER": None}, path=path)
    assert out.startswith("podman build ")


def test_the_engine_stays_docker_where_there_is_no_podman(tmp_path):
    path = _engine_path(tmp_path, "docker")
    out = make("-n", "users-image", env={"DOCKER": None}, path=path)
    assert out.startswith("docker build -f docker/Dockerfile")


def test_images_builds_the_base_then_all_six_targets():
    out = dry("images", env={"DOCKER": "podman"})
    assert out.splitlines()[0] == "docker/base-image.sh podman"
    assert [line.split("--target ")[1].split()[0] for line in out.splitlines() if " build " in line] == [
        f"{svc}-app" for svc in SERVICES
    ]


def test_make_test_leaves_the_container_tier_to_test_containers():
    assert "--ignore=tests/containers" in dry("test")
    assert "pytest tests/containers" in dry("test-containers")


@pytest.mark.parametrize("svc", SERVICES)
def test_kind_load_loads_the_image_into_the_named_cluster(svc):
    # The tag the manifests name: a pod with imagePullPolicy IfNotPresent finds it in kind.
    assert f"kind load docker-image goshop-{svc}:{VERSION} --name goshop" in dry(f"{svc}-kind-load")
    out = dry(f"{svc}-kind-load", env={"KIND_CLUSTER": "x"})
    assert f"kind load docker-image goshop-{svc}:{VERSION} --name x" in out


@pytest.mark.parametrize("svc", SERVICES)
def test_build_and_load_builds_then_loads(svc):
    out = dry(f"{svc}-build-and-load")
    assert out.index(f"--target {svc}-app") < out.index(f"kind load docker-image goshop-{svc}:{VERSION}")


@pytest.mark.parametrize("svc", SERVICES)
def test_apply_names_the_services_flat_manifests(svc):
    out = dry(f"k8s-{svc}-apply", env={"K8S_NAMESPACE": "ns"})
    (apply,) = [line for line in out.splitlines() if line.startswith("kubectl apply")]
    files = re.findall(r"-f k8s/(\S+)\.yaml", apply)
    assert "-n ns" in apply
    assert "namespace-goshop" in files
    assert "networkpolicies" in files, "a service applied alone is closed by default too"
    assert set(MANIFESTS[svc]) <= set(files), apply
    others = {f for s, names in MANIFESTS.items() if s != svc for f in names}
    assert not set(files) & others, f"k8s-{svc}-apply applies another service's manifests"


@pytest.mark.parametrize("svc", SERVICES)
def test_every_applied_manifest_exists_once_k8s_is_there(svc):
    if not (ROOT / "k8s").is_dir():
        pytest.skip("k8s/ is not there yet")
    out = dry(f"k8s-{svc}-apply")
    missing = [f for f in re.findall(r"-f (k8s/\S+\.yaml)", out) if not (ROOT / f).exists()]
    assert not missing


@pytest.mark.parametrize("svc", ["users", "orders", "payments"])
def test_apply_reruns_the_services_migrations(svc):
    out = dry(f"k8s-{svc}-apply")
    assert out.index(f"kubectl delete job -n goshop {svc}-migrate --ignore-not-found") < out.index("kubectl apply")


@pytest.mark.parametrize("svc", SERVICES)
def test_status_and_logs_select_the_service(svc):
    kinds = "pods" if svc == "outboxer" else "pods,svc"
    assert f"kubectl get {kinds} -n ns -l app={svc}" in dry(f"k8s-{svc}-status", env={"K8S_NAMESPACE": "ns"})
    assert f"kubectl logs deploy/{svc} -n ns --tail=200" in dry(f"k8s-{svc}-logs", env={"K8S_NAMESPACE": "ns"})


def test_docker_only_brings_everything_up_and_down_with_volumes():
    assert f"{COMPOSE_ALL} up -d --build" in dry("dev-docker-only")
    assert f"{COMPOSE_ALL} down -v" in dry("dev-docker-only-down")


def test_docker_infra_is_the_infra_file_joined_to_kind_when_a_cluster_exists():
    up = dry("docker-infra-up")
    assert "docker network inspect kind" in up
    assert f"{COMPOSE_INFRA} -f docker/compose.kind.yml up -d" in up
    assert f"else {COMPOSE_INFRA} up -d" in up
    assert dry("docker-infra-down").strip() == f"{COMPOSE_INFRA} down -v"


def test_kind_cluster_is_created_from_the_config_only_when_missing():
    out = dry("k8s-kind-create", env={"KIND_CLUSTER": "x"})
    assert "kind get clusters" in out
    assert "kind create cluster --name x --config k8s/kind-config.yaml" in out
    assert "kind delete cluster --name x" in dry("k8s-kind-delete", env={"KIND_CLUSTER": "x"})


def test_ingress_nginx_manifest_is_pinned_and_downloaded_to_k8s_infra():
    assert f"curl -fsSL {INGRESS_URL} -o k8s/infra/ingress-nginx-kind.yaml" in dry("k8s-ingress-nginx-download")


def test_ingress_nginx_install_applies_the_local_manifest():
    assert "kubectl apply -f k8s/infra/ingress-nginx-kind.yaml" in dry("k8s-ingress-nginx-install")


def test_ingress_nginx_wait_waits_for_the_controller():
    wait = "kubectl wait -n ingress-nginx --for=condition=ready pod --selector=app.kubernetes.io/component=controller"
    assert f"{wait} --timeout=90s" in dry("k8s-ingress-nginx-wait")


def test_ingress_apply_names_the_three_ingresses():
    out = dry("k8s-ingress-apply")
    for name in ("users", "gateway", "opsassistant"):
        assert f"-f k8s/{name}-ingress.yaml" in out


def test_ingress_bootstrap_installs_waits_then_applies():
    out = dry("k8s-ingress-bootstrap")
    steps = ["kubectl apply -f k8s/infra/ingress-nginx-kind.yaml", "kubectl wait -n ingress-nginx", "-ingress.yaml"]
    assert [out.index(step) for step in steps] == sorted(out.index(step) for step in steps)


def test_portforward_ingress_forwards_the_controller_to_8080():
    out = dry("k8s-portforward-ingress")
    assert "kubectl port-forward -n ingress-nginx svc/ingress-nginx-controller 8080:80" in out


def test_build_and_load_all_covers_every_service():
    out = dry("k8s-build-and-load-all")
    for svc in SERVICES:
        assert f"--target {svc}-app" in out
        assert f"kind load docker-image goshop-{svc}:{VERSION}" in out


def test_apply_all_applies_the_kustomize_base():
    out = dry("k8s-apply-all")
    assert "kubectl kustomize --load-restrictor=LoadRestrictionsNone k8s | kubectl apply -f -" in out


def test_bootstrap_runs_cluster_images_dev_overlay_ingress_in_order():
    out = dry("k8s-bootstrap")
    steps = [
        "kind create cluster",
        "docker build",
        "kind load docker-image",
        "k8s/overlays/dev | kubectl apply",
        "kubectl wait -n ingress-nginx",
    ]
    assert [out.index(step) for step in steps] == sorted(out.index(step) for step in steps)
    assert "docker-compose" not in out


def test_dev_hybrid_starts_docker_infra_and_applies_the_hybrid_overlay():
    out = dry("dev-hybrid")
    for step in (
        f"{COMPOSE_INFRA} up -d",
        "kind create cluster",
        "--target opsassistant-app",
        "k8s/overlays/hybrid | kubectl apply",
        "-f k8s/gateway-ingress.yaml",
    ):
        assert step in out
    assert out.index("kind load docker-image") < out.index("k8s/overlays/hybrid | kubectl apply")


def test_dev_hybrid_down_cleans_the_namespace_then_stops_docker_infra():
    out = dry("dev-hybrid-down")
    assert out.index("kubectl delete all,ingress,configmap") < out.index(f"{COMPOSE_INFRA} down -v")


def test_k8s_clean_empties_the_namespace_but_keeps_cluster_and_ingress_nginx():
    out = dry("k8s-clean", env={"K8S_NAMESPACE": "ns"})
    assert re.search(r"kubectl delete \S*all\S*ingress\S*configmap\S* --all -n ns", out)
    assert "kind delete" not in out
    assert "ingress-nginx" not in out


def test_status_all_shows_the_namespace_and_ingress_nginx():
    out = dry("k8s-status-all", env={"K8S_NAMESPACE": "ns"})
    assert re.search(r"kubectl get pods,svc\S*,ingress -n ns", out)
    assert "kubectl get pods,svc -n ingress-nginx" in out


def test_redeploy_all_rebuilds_every_image_then_applies():
    out = dry("k8s-redeploy-all")
    last_load = out.rindex("kind load docker-image")
    assert all(f"goshop-{svc}:{VERSION}" in out for svc in SERVICES)
    assert last_load < out.index("| kubectl apply -f -") < out.index("kubectl rollout restart deployment")


def test_tilt_targets_pass_the_infra_choice():
    assert "tilt up -- --infra=cluster" in dry("tilt-up")
    assert "tilt up -- --infra=compose" in dry("tilt-up", env={"TILT_INFRA": "compose"})
    assert "tilt down -- --infra=compose" in dry("tilt-down", env={"TILT_INFRA": "compose"})


def test_load_drives_make_runs_gateway_with_its_knobs():
    assert "-m goshop_devtools.load --host http://127.0.0.1:8080 --users 20 " in dry(
        "load", env={"GOSHOP_DEV_BASE_PORT": None}
    )
    out = dry("load", env={"LOAD_USERS": "3", "LOAD_TIME": "10s", "LOAD_SETTLE_SECONDS": "5"})
    assert "--users 3 " in out
    assert "--time 10s --settle-seconds 5" in out
    # A shop moved with GOSHOP_DEV_BASE_PORT is the one loaded.
    assert "--host http://127.0.0.1:20080 " in dry("load", env={"GOSHOP_DEV_BASE_PORT": "20080"})


def test_clean_data_still_forgets_make_runs_data():
    assert dry("clean-data", env={"GOSHOP_DEV_DIR": None}).splitlines()[-1] == "rm -rf '.goshop'"


def _clean_data(data_dir: Path) -> subprocess.CompletedProcess:
    environ = {**os.environ, "MAKEFLAGS": "", "GOSHOP_DEV_DIR": str(data_dir)}
    return subprocess.run(
        [MAKE, "--no-print-directory", "clean-data"], cwd=ROOT, env=environ, capture_output=True, text=True, check=False
    )


def test_clean_data_removes_the_goshop_dev_dir_and_nothing_else(tmp_path):
    data_dir = tmp_path / "state"
    (data_dir / "pgdata").mkdir(parents=True)
    (data_dir / "runner.lock").write_text("")
    (tmp_path / "beside").mkdir()
    repo_data = (ROOT / ".goshop").exists()

    assert _clean_data(data_dir).returncode == 0
    assert not data_dir.exists()
    assert (tmp_path / "beside").exists()
    assert (ROOT / ".goshop").exists() == repo_data


def test_clean_data_refuses_a_directory_that_is_not_make_runs(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = _clean_data(tmp_path)
    assert result.returncode != 0
    assert "not a make run data directory, not removed" in result.stderr
    assert (tmp_path / "notes.txt").exists()


def test_clean_data_refuses_while_a_make_run_uses_the_directory(tmp_path):
    (tmp_path / "pgdata").mkdir()
    # What a live runner holds (goshop_devtools.runner_lock).
    lock = RunnerLock(tmp_path)
    lock.acquire(patience=0)
    try:
        result = _clean_data(tmp_path)
    finally:
        lock.release()
    assert result.returncode != 0
    assert f"a make run (pid {os.getpid()}) is using {tmp_path}: stop it first" in result.stderr
    assert (tmp_path / "pgdata").exists()


def test_run_passes_run_args_to_the_runner():
    assert dry("run", env={"RUN_ARGS": "--no-reload"}).splitlines()[-1] == ".venv/bin/goshop-dev --no-reload"


EVERYDAY = ["run", "test", "lint", "format", "load", "bench", "clean-data", "clean"]


def test_help_opens_with_the_everyday_targets():
    lines = make("help").splitlines()
    assert lines[0] == "Everyday:"
    assert [line.split()[0] for line in lines[1 : 1 + len(EVERYDAY)]] == EVERYDAY


def test_help_groups_the_other_targets_under_headings():
    headings = [line for line in make("help").splitlines() if line and not line.startswith(" ")]
    assert headings[:3] == ["Everyday:", "Tests and checks:", "Set-up, migrations and code:"]
    assert {"Docker compose:", "Images:", "kind and Kubernetes:", "Tilt:"} <= set(headings)
    # Every documented target has a section: none falls to the catch-all.
    assert "Other:" not in headings


def test_help_shows_values_not_make_variables():
    out = make("help", env={"KIND_CLUSTER": "my-cluster", "K8S_NAMESPACE": "my-ns"})
    assert "$(" not in out
    assert "delete kind cluster my-cluster" in out
    assert "to my-ns" in out


def test_make_test_installs_the_openapi_linters_when_they_are_missing(tmp_path):
    # Where they are not yet installed, the test target's first steps include npm ci
    # (a prerequisite, not a step a developer must remember).
    commands = make("-n", "test", f"NODE_TOOLS={tmp_path / 'node'}")
    assert "npm ci --ignore-scripts" in commands
    assert commands.index("npm ci") < commands.index("-m pytest")
