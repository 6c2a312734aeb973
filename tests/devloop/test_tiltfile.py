"""The Tiltfile, evaluated offline the way `tilt up` would evaluate it.

No tilt, Docker or cluster here: starlark-pyo3 runs the Tiltfile in Tilt's dialect
(no f-strings, type annotations or load re-export) against Python stubs of Tilt's
builtins that record each call. The stubs carry Tilt's real parameter lists, so a
misspelt keyword fails here as it fails in `tilt up`. `kustomize()` renders the
real overlay with `kubectl kustomize` when k8s/ is there; checks that need the
manifests or docker/Dockerfile skip, saying why, until those exist.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import starlark as sl
import yaml

ROOT = Path(__file__).resolve().parents[2]
TILTFILE = ROOT / "Tiltfile"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE_INFRA = ROOT / "docker" / "compose.infra.yml"
K8S = ROOT / "k8s"

SERVICES = ("users", "orders", "payments", "outboxer", "gateway", "opsassistant")
MIGRATE_JOBS = {"users-migrate", "orders-migrate", "payments-migrate"}
APP_WORKLOADS = {
    "users",
    "orders",
    "orders-consumer",
    "payments",
    "payments-consumer",
    "outboxer",
    "maintenance",
    "gateway",
    "opsassistant",
}
MANUAL = "TRIGGER_MODE_MANUAL"
AUTO = "TRIGGER_MODE_AUTO"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"}


def _as_list(value) -> list:
    """Tilt takes one value or a list for port_forwards and labels."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass(frozen=True)
class Step:
    """A live_update step: ("sync", local, remote), ("run", cmd, trigger), ("fall_back_on", files)."""

    kind: str
    args: tuple


@dataclass
class Tilt:
    """What one evaluation of the Tiltfile asked Tilt to do."""

    flags: dict
    calls: list = field(default_factory=list)
    rendered: dict = field(default_factory=dict)  # overlay -> objects, or None when k8s/ is missing

    def of(self, name: str) -> list[dict]:
        return [kwargs for called, kwargs in self.calls if called == name]

    # --- Tilt's builtins, with Tilt's parameter lists ------------------------

    def docker_build(
        self,
        ref,
        context,
        build_args=None,
        dockerfile="Dockerfile",
        dockerfile_contents="",
        live_update=(),
        match_in_env_vars=False,
        ignore=(),
        only=(),
        entrypoint=(),
        target="",
        ssh="",
        network="",
        secret="",
        extra_tag="",
        container_args=None,
        cache_from=(),
        pull=False,
        platform="",
    ):
        self.calls.append(
            (
                "docker_build",
                {
                    "ref": ref,
                    "context": context,
                    "dockerfile": dockerfile,
                    "target": target,
                    "live_update": list(live_update),
                    "ignore": list(ignore),
                    "only": list(only),
                },
            )
        )

    def k8s_yaml(self, yaml, allow_duplicates=False):
        self.calls.append(("k8s_yaml", {"yaml": yaml}))

    def kustomize(self, path, kustomize_bin=None, flags=()):
        self.calls.append(("kustomize", {"path": path}))
        kubectl = shutil.which("kubectl")
        if not (ROOT / path).is_dir() or kubectl is None:
            self.rendered[path] = None
            return ""
        argv = [kubectl, "kustomize", *flags, path]
        result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{' '.join(argv[1:])}: {result.stderr}"
        self.rendered[path] = [o for o in yaml.safe_load_all(result.stdout) if o]
        return result.stdout

    def decode_yaml_stream(self, yaml_text):
        return [o for o in yaml.safe_load_all(yaml_text) if o]

    def encode_yaml_stream(self, objs):
        return yaml.safe_dump_all(objs)

    def read_yaml(self, path, default=None):
        file = ROOT / path
        if not file.exists():
            if default is None:
                raise FileNotFoundError(path)
            return default
        return yaml.safe_load(file.read_text())

    def k8s_resource(
        self,
        workload="",
        new_name="",
        port_forwards=(),
        extra_pod_selectors=(),
        trigger_mode=AUTO,
        resource_deps=(),
        objects=(),
        auto_init=True,
        pod_readiness="",
        links=(),
        labels=(),
        discovery_strategy="",
    ):
        self.calls.append(
            (
                "k8s_resource",
                {
                    "workload": workload,
                    "new_name": new_name,
                    "port_forwards": _as_list(port_forwards),
                    "trigger_mode": trigger_mode,
                    "resource_deps": list(resource_deps),
                    "labels": _as_list(labels),
                },
            )
        )

    def docker_compose(self, configPaths, env_file=None, project_name="", profiles=(), wait=False):
        self.calls.append(("docker_compose", {"configPaths": configPaths, "profiles": list(profiles)}))

    def dc_resource(
        self,
        name,
        trigger_mode=AUTO,
        resource_deps=(),
        links=(),
        labels=(),
        auto_init=True,
        project_name="",
        new_name="",
        infra=False,
    ):
        self.calls.append(("dc_resource", {"name": name, "labels": list(labels)}))

    def local_resource(
        self,
        name,
        cmd="",
        deps=(),
        trigger_mode=AUTO,
        resource_deps=(),
        ignore=(),
        auto_init=True,
        serve_cmd="",
        cmd_bat="",
        serve_cmd_bat="",
        allow_parallel=False,
        links=(),
        tags=(),
        env=None,
        serve_env=None,
        readiness_probe=None,
        dir="",
        serve_dir="",
        labels=(),
    ):
        self.calls.append(("local_resource", {"name": name, "cmd": cmd, "resource_deps": list(resource_deps)}))

    def sync(self, local_path, remote_path):
        return sl.OpaquePythonObject(Step("sync", (local_path, remote_path)))

    def run(self, cmd, trigger=(), echo_off=False):
        return sl.OpaquePythonObject(Step("run", (cmd, tuple(trigger))))

    def fall_back_on(self, files):
        return sl.OpaquePythonObject(Step("fall_back_on", (tuple([files] if isinstance(files, str) else files),)))

    def config_define_string(self, name, args=False, usage=""):
        self.calls.append(("config.define", {"name": name}))

    def config_define_string_list(self, name, args=False, usage=""):
        self.calls.append(("config.define", {"name": name}))

    def config_parse(self):
        defined = {kwargs["name"] for kwargs in self.of("config.define")}
        unknown = set(self.flags) - defined
        if unknown:
            raise ValueError(f"unknown Tiltfile flags {sorted(unknown)}")
        return dict(self.flags)

    def os_getenv(self, key, default=None):
        return default


BUILTINS = (
    "docker_build",
    "k8s_yaml",
    "kustomize",
    "decode_yaml_stream",
    "encode_yaml_stream",
    "read_yaml",
    "k8s_resource",
    "docker_compose",
    "dc_resource",
    "local_resource",
    "sync",
    "run",
    "fall_back_on",
)
PRELUDE = """
config = struct(define_string=_config_define_string, define_string_list=_config_define_string_list,
                parse=_config_parse)
os = struct(getenv=_os_getenv)
"""


def _dialect() -> sl.Dialect:
    dialect = sl.Dialect.extended()
    dialect.enable_f_strings = False
    dialect.enable_types = sl.DialectTypes.DISABLE
    dialect.enable_load_reexport = False
    return dialect


def evaluate(source: str, flags: dict | None = None) -> Tilt:
    tilt = Tilt(flags or {})
    module = sl.Module()
    for name in BUILTINS:
        module.add_callable(name, getattr(tilt, name))
    for name in ("config_define_string", "config_define_string_list", "config_parse", "os_getenv"):
        module.add_callable("_" + name, getattr(tilt, name))
    module["TRIGGER_MODE_MANUAL"] = MANUAL
    module["TRIGGER_MODE_AUTO"] = AUTO
    globals_ = sl.Globals.extended_by([sl.LibraryExtension.StructType, sl.LibraryExtension.Print])
    sl.eval(module, sl.parse("prelude", PRELUDE, _dialect()), globals_)
    sl.eval(module, sl.parse("Tiltfile", source, _dialect()), globals_)
    return tilt


@pytest.fixture(scope="module", params=["cluster", "compose"])
def tilt(request) -> Tilt:
    return evaluate(TILTFILE.read_text(), {"infra": request.param})


@pytest.fixture(scope="module")
def cluster() -> Tilt:
    return evaluate(TILTFILE.read_text(), {"infra": "cluster"})


def _steps(build: dict) -> list[Step]:
    return build["live_update"]


def _syncs(build: dict) -> list[tuple[str, str]]:
    return [step.args for step in _steps(build) if step.kind == "sync"]


def _rendered(tilt: Tilt) -> list[dict]:
    (path,) = [kwargs["path"] for kwargs in tilt.of("kustomize")]
    objects = tilt.rendered[path]
    if objects is None:
        pytest.skip(f"{path} is not there yet (or kubectl is missing): nothing to render")
    return objects


def _deployed(tilt: Tilt) -> list[dict]:
    """The objects the Tiltfile handed to k8s_yaml, after its own edits."""
    return [o for kwargs in tilt.of("k8s_yaml") for o in yaml.safe_load_all(kwargs["yaml"]) if o]


def _containers(obj: dict) -> list[dict]:
    spec = obj.get("spec", {})
    if obj.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    return pod.get("containers", []) + pod.get("initContainers", [])


def _dockerfile_stages() -> dict[str, dict]:
    """Stage name -> {"parent": stage or image, "workdir": ..., "copies": [(sources, dest)]}."""
    if not DOCKERFILE.exists():
        pytest.skip("docker/Dockerfile is not there yet")
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        instruction = words[0].upper()
        if instruction == "FROM":
            args = [w for w in words[1:] if not w.startswith("--")]
            name = args[2] if len(args) >= 3 and args[1].lower() == "as" else f"#{len(stages)}"
            parent = stages.get(args[0])
            current = stages[name] = {
                "parent": args[0],
                "workdir": parent["workdir"] if parent else "/",
                "copies": [],
            }
        elif instruction == "WORKDIR" and current is not None:
            current["workdir"] = str(Path(current["workdir"], words[1]))
        elif instruction in ("COPY", "ADD") and current is not None:
            args = [w for w in words[1:] if not w.startswith("--")]
            sources, dest = args[:-1], args[-1]
            if not dest.startswith("/"):
                dest = str(Path(current["workdir"], dest)) + ("/" if dest.endswith("/") else "")
            current["copies"].append((sources, dest))
    return stages


def _stage_chain(stages: dict[str, dict], target: str) -> list[dict]:
    chain = []
    while target in stages:
        chain.append(stages[target])
        target = stages[target]["parent"]
    return chain


# --- the tests ------------------------------------------------------------------


def test_tiltfile_uses_nothing_tilts_starlark_lacks():
    text = TILTFILE.read_text()
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert not re.search(r"""\bf["']""", code), "f-strings: Tilt's Starlark has none"
    assert not re.search(r"\bwhile\b", code), "`while`: the test's Starlark lacks it"
    assert not re.search(r"\bset\(", code), "set(): the test's Starlark lacks it"


def test_stubs_reject_a_misspelt_keyword_like_tilt_does():
    with pytest.raises(sl.StarlarkError, match="targte"):
        evaluate("docker_build('goshop-users', '.', targte='users-app')")


def test_an_unknown_infra_fails_the_tiltfile():
    with pytest.raises(sl.StarlarkError, match="--infra"):
        evaluate(TILTFILE.read_text(), {"infra": "kubernetes"})


def test_cluster_infra_deploys_the_dev_overlay_without_compose(cluster):
    assert [kwargs["path"] for kwargs in cluster.of("kustomize")] == ["k8s/overlays/dev"]
    assert cluster.of("docker_compose") == []
    assert len(cluster.of("k8s_yaml")) == 1


def test_compose_infra_starts_docker_infra_and_the_hybrid_overlay():
    tilt = evaluate(TILTFILE.read_text(), {"infra": "compose", "profiles": ["monitoring"]})
    assert [kwargs["path"] for kwargs in tilt.of("kustomize")] == ["k8s/overlays/hybrid"]
    assert tilt.of("docker_compose") == [
        {"configPaths": ["docker/compose.infra.yml", "docker/compose.kind.yml"], "profiles": ["monitoring"]}
    ]
    if not COMPOSE_INFRA.exists():
        pytest.skip("docker/compose.infra.yml is not there yet: its services cannot be checked")
    services = yaml.safe_load(COMPOSE_INFRA.read_text()).get("services", {})
    started = {n for n, s in services.items() if not s.get("profiles") or "monitoring" in s["profiles"]}
    assert {kwargs["name"] for kwargs in tilt.of("dc_resource")} == started


def test_each_service_image_is_built_once_from_its_dockerfile_target(tilt):
    builds = tilt.of("docker_build")
    assert sorted(b["ref"] for b in builds) == sorted(f"goshop-{s}" for s in SERVICES)
    for build in builds:
        svc = build["ref"].removeprefix("goshop-")
        assert (build["context"], build["dockerfile"], build["target"]) == (".", "docker/Dockerfile", f"{svc}-app")


def test_every_image_target_is_a_stage_of_the_dockerfile(cluster):
    stages = _dockerfile_stages()
    missing = [b["target"] for b in cluster.of("docker_build") if b["target"] not in stages]
    assert not missing, f"docker/Dockerfile has no stage {missing}"


def test_live_update_falls_back_then_syncs_then_runs(tilt):
    order = {"fall_back_on": 0, "sync": 1, "run": 2}
    for build in tilt.of("docker_build"):
        kinds = [step.kind for step in _steps(build)]
        assert kinds, f"{build['ref']}: no live_update"
        assert kinds == sorted(kinds, key=order.__getitem__), f"{build['ref']}: {kinds}"
        fallback = {f for step in _steps(build) if step.kind == "fall_back_on" for f in step.args[0]}
        assert {"docker/Dockerfile", "constraints.txt"} <= fallback, build["ref"]


def test_each_image_syncs_common_code_and_its_own_package(tilt):
    own = {s: f"goshop_{s}" for s in SERVICES} | {"opsassistant": "goshop_ops"}
    for build in tilt.of("docker_build"):
        locals_ = {local for local, _ in _syncs(build)}
        svc = build["ref"].removeprefix("goshop-")
        assert {"goshop_common", own[svc]} <= locals_, build["ref"]


def test_every_sync_copies_a_repo_path_to_the_same_path_under_app(tilt):
    for build in tilt.of("docker_build"):
        for local, remote in _syncs(build):
            assert (ROOT / local).exists(), f"{build['ref']}: sync of missing {local}"
            assert remote == f"/app/{local}", f"{build['ref']}: {local} -> {remote}"
            ignored = [p for p in build["ignore"] if fnmatch.fnmatch(local, p)]
            assert not ignored, f"{build['ref']}: {local} is synced but ignored by {ignored}"


def test_every_run_trigger_is_a_synced_file(tilt):
    for build in tilt.of("docker_build"):
        synced = {local for local, _ in _syncs(build)}
        for step in _steps(build):
            if step.kind == "run":
                assert set(step.args[1]) <= synced, f"{build['ref']}: {step.args[0]} triggers on unsynced files"


def test_synced_paths_are_where_the_dockerfile_copies_code(cluster):
    stages = _dockerfile_stages()
    for build in cluster.of("docker_build"):
        chain = _stage_chain(stages, build["target"])
        if not chain:
            pytest.fail(f"docker/Dockerfile has no stage {build['target']}")
        assert chain[0]["workdir"] == "/app", f"{build['target']}: WORKDIR {chain[0]['workdir']}"
        dests = [dest.rstrip("/") or "/" for stage in chain for _, dest in stage["copies"]]
        for _, remote in _syncs(build):
            covered = [d for d in dests if remote == d or remote.startswith(d.rstrip("/") + "/")]
            assert covered, f"{build['target']}: nothing COPYs to {remote} (COPY destinations {dests})"


def test_no_dockerfile_copy_source_is_ignored_by_tilt(cluster):
    stages = _dockerfile_stages()
    ignore = cluster.of("docker_build")[0]["ignore"]
    for name, stage in stages.items():
        for sources, _ in stage["copies"]:
            for source in sources:
                hits = [p for p in ignore if fnmatch.fnmatch(source.rstrip("/"), p)]
                assert not hits, f"stage {name} COPYs {source}, which the Tiltfile leaves out of the context"


def test_every_image_is_used_by_a_deployed_manifest(cluster):
    _rendered(cluster)
    used = {c["image"].rsplit(":", 1)[0] for o in _deployed(cluster) for c in _containers(o)}
    unused = sorted(b["ref"] for b in cluster.of("docker_build") if b["ref"] not in used)
    assert not unused, f"built but no manifest runs them: {unused}"


def test_every_resource_names_a_rendered_workload(tilt):
    objects = _rendered(tilt)
    workloads = {o["metadata"]["name"] for o in objects if o.get("kind") in WORKLOAD_KINDS}
    named = {kwargs["workload"] for kwargs in tilt.of("k8s_resource")}
    assert named <= workloads, f"k8s_resource for missing workloads: {sorted(named - workloads)}"
    assert workloads >= APP_WORKLOADS | MIGRATE_JOBS


def test_every_resource_dep_is_a_defined_resource(tilt):
    objects = _rendered(tilt)
    resources = {o["metadata"]["name"] for o in objects if o.get("kind") in WORKLOAD_KINDS}
    resources |= {kwargs["new_name"] for kwargs in tilt.of("k8s_resource") if kwargs["new_name"]}
    resources |= {kwargs["name"] for kwargs in tilt.of("dc_resource") + tilt.of("local_resource")}
    for kwargs in tilt.of("k8s_resource") + tilt.of("local_resource"):
        unknown = set(kwargs["resource_deps"]) - resources
        assert not unknown, f"{kwargs.get('workload') or kwargs.get('name')} depends on unknown {sorted(unknown)}"


def test_apps_wait_for_their_migrations(tilt):
    deps = {kwargs["workload"]: set(kwargs["resource_deps"]) for kwargs in tilt.of("k8s_resource")}
    assert "users-migrate" in deps["users"]
    assert "orders-migrate" in deps["orders"]
    assert "orders-migrate" in deps["orders-consumer"]
    assert "payments-migrate" in deps["payments"]
    assert "payments-migrate" in deps["payments-consumer"]
    assert {"orders-migrate", "payments-migrate"} <= deps["outboxer"]
    assert {"users-migrate", "orders-migrate", "payments-migrate"} <= deps["maintenance"]
    assert {"users", "orders", "payments"} <= deps["gateway"]


def test_migrations_run_only_when_triggered(tilt):
    resources = {kwargs["workload"]: kwargs for kwargs in tilt.of("k8s_resource")}
    assert set(resources) >= MIGRATE_JOBS
    for job in MIGRATE_JOBS:
        assert resources[job]["trigger_mode"] == MANUAL, job
        assert resources[job]["labels"] == ["migrations"]
    for name in APP_WORKLOADS:
        assert resources[name]["trigger_mode"] == AUTO, name


def test_port_forwards_are_make_runs_ports(tilt):
    forwards = {kwargs["workload"]: kwargs["port_forwards"] for kwargs in tilt.of("k8s_resource")}
    expected = {
        "gateway": 8080,
        "users": 8081,
        "orders": 8082,
        "payments": 8083,
        "outboxer": 8084,
        "opsassistant": 8085,
        "orders-consumer": 8086,
        "payments-consumer": 8087,
        "maintenance": 8088,
    }
    assert {name: forwards[name] for name in expected} == {n: [f"{p}:{p}"] for n, p in expected.items()}


def test_the_cluster_infras_jaeger_ui_is_forwarded_to_localhost(cluster):
    forwards = {kwargs["workload"]: kwargs["port_forwards"] for kwargs in cluster.of("k8s_resource")}
    assert forwards["jaeger"] == ["16686:16686"]
    assert forwards["postgres"] == []


def test_deployed_app_processes_reload_on_synced_code(cluster):
    _rendered(cluster)
    for obj in _deployed(cluster):
        if obj.get("kind") != "Deployment" or obj["metadata"]["name"] not in APP_WORKLOADS:
            continue
        for container in _containers(obj):
            if not container.get("image", "").startswith("goshop-"):
                continue
            argv = container.get("command", []) + container.get("args", [])
            assert argv, f"{obj['metadata']['name']}: no command in the manifest, so Tilt cannot add a reload"
            reloads = "--reload" in argv or Path(argv[0]).name == "hupper"
            assert reloads, f"{obj['metadata']['name']} runs {argv} without a reloader"
            read_only = container.get("securityContext", {}).get("readOnlyRootFilesystem", False)
            assert not read_only, f"{obj['metadata']['name']}: live_update cannot write a read-only filesystem"


def test_migrate_jobs_are_deployed_unchanged(cluster):
    rendered = {(o["kind"], o["metadata"]["name"]): o for o in _rendered(cluster)}
    for obj in _deployed(cluster):
        if obj.get("kind") == "Job":
            assert obj == rendered[("Job", obj["metadata"]["name"])]
