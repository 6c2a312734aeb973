"""The k8s/ manifests, proven offline: kustomize renders the base and both overlays,
every object passes the Kubernetes 1.32 schema (strict), and the objects agree with
each other (selectors, ports, config references, ingress backends) and with the
services' real commands, ports and settings.

No cluster: ``kubectl kustomize`` only renders. Skipped (with the reason) without kubectl.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
K8S_VERSION = "1.32"
NAMESPACE = "goshop"
# Overlays live under k8s/, whose root is the base: kustomize's cycle check refuses
# `../..`, so they list the base's files and need files outside their root.
RENDER_FLAGS = ("--load-restrictor=LoadRestrictionsNone",)
TARGETS = {
    "base": K8S,
    "dev": K8S / "overlays" / "dev",
    "hybrid": K8S / "overlays" / "hybrid",
    "production": K8S / "overlays" / "production",
}

HTTP_SERVICES = {"gateway": 8080, "users": 8081, "orders": 8082, "payments": 8083, "opsassistant": 8085}
# Deployment -> (image, command, port)
DEPLOYMENTS = {
    "users": ("goshop-users", "goshop_common.web.serve goshop_users/production.ini", 8081),
    "orders": ("goshop-orders", "goshop_common.web.serve goshop_orders/production.ini", 8082),
    "payments": ("goshop-payments", "goshop_common.web.serve goshop_payments/production.ini", 8083),
    "gateway": ("goshop-gateway", "goshop_common.web.serve goshop_gateway/production.ini", 8080),
    "opsassistant": ("goshop-opsassistant", "goshop_common.web.serve goshop_ops/production.ini", 8085),
    "outboxer": ("goshop-outboxer", "goshop_outboxer --host 0.0.0.0 --port 8084", 8084),
    "orders-consumer": ("goshop-orders", "goshop_orders.consumer --host 0.0.0.0 --port 8086", 8086),
    "payments-consumer": ("goshop-payments", "goshop_payments.consumer --host 0.0.0.0 --port 8087", 8087),
    # Retention, from the outboxer's image (every image holds every package).
    "maintenance": ("goshop-outboxer", "goshop_maintenance --host 0.0.0.0 --port 8088", 8088),
}
# Deployment -> its internal port (/metrics, detailed health): goshop.metrics_port
# in its production.ini, a pod port on no Service. Workers serve theirs on their one port.
METRICS_PORTS = {"gateway": 9080, "users": 9081, "orders": 9082, "payments": 9083, "opsassistant": 9085}
# What only the cluster's side may reach: never through an Ingress.
INTERNAL_PATHS = ("/metrics", "/v1/db/ping")
# Ingress -> (path, pathType) it publishes; nothing else of that service is public.
INGRESS_PATHS = {
    "gateway": {("/", "Prefix")},
    "users": {("/v1/users", "Prefix"), ("/.well-known/jwks.json", "Exact"), ("/live", "Exact"), ("/ready", "Exact")},
    "opsassistant": {("/v1/ops", "Prefix"), ("/live", "Exact"), ("/ready", "Exact")},
}
MIGRATIONS = ("users", "orders", "payments")

# What the seed's Makefile applies, file by file (README.goshop.md, "Makefile").
SEED_FLAT_FILES = (
    ["namespace-goshop.yaml"]
    + [f"{s}-{part}.yaml" for s in HTTP_SERVICES for part in ("configmap", "deployment", "service")]
    + ["outboxer-configmap.yaml", "outboxer-deployment.yaml"]
    + ["users-ingress.yaml", "gateway-ingress.yaml", "opsassistant-ingress.yaml"]
)
CONTRACT_FILES = [
    *SEED_FLAT_FILES,
    "goshop-secrets.yaml",
    "orders-consumer-deployment.yaml",
    "payments-consumer-deployment.yaml",
    "maintenance-configmap.yaml",
    "maintenance-deployment.yaml",
    *(f"{s}-migrate-job.yaml" for s in MIGRATIONS),
    "kustomization.yaml",
    "kind-config.yaml",
]

INFRA_ADDRESSES = {
    "dev": {"postgres": "postgres:5432", "kafka": "kafka:9092"},
    "hybrid": {"postgres": "goshop-postgres:5432", "kafka": "goshop-kafka:9092"},
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
# Renders whose Secrets the operator creates: they ship none.
OPERATOR_SECRETS_TARGETS = ("production",)
# What an operator puts in them (k8s/overlays/production/kustomization.yaml, k8s/README.md
# "Production"): values the repository does not hold, so production accepts them.
OPERATOR_PASSWORD = "s3cret-" * 4
OPERATOR_VALUES = {"GOSHOP_OPS_TOKEN": "operator-made-ops-token-" + "x" * 16}


def _operator_secret(name: str) -> dict[str, str]:
    """The keys of a Secret the operator creates: a workload's database Secret holds its
    role's URL; db-admin the administrator's, and every role's password."""
    from goshop_common.db import roles
    from goshop_devtools.settings import SPECS

    def url(user: str) -> str:
        return f"postgresql://{user}:{OPERATOR_PASSWORD}@db.example:5432/goshop"

    if name == "db-admin":
        passwords = {spec.env: OPERATOR_PASSWORD for spec in SPECS if spec.name in roles.PASSWORD_SETTINGS.values()}
        return {"GOSHOP_DATABASE_URL": url("postgres"), **passwords}
    if name.endswith("-db"):
        workload = name.removesuffix("-db")
        return {"GOSHOP_DATABASE_URL": url(roles.PROCESS_ROLES[PROCESSES.get(workload, workload)])}
    return OPERATOR_VALUES


# goshop's version (setup.py): the tag every goshop image carries in k8s/ and the Makefile.
VERSION = re.search(r'^\s*version="([^"]+)",$', (ROOT / "setup.py").read_text(), re.M).group(1)


# --- rendering -----------------------------------------------------------------


def kustomize(directory: Path) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: cannot render k8s/ with kustomize")
    result = subprocess.run(
        [kubectl, "kustomize", *RENDER_FLAGS, str(directory)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, f"kubectl kustomize {directory.relative_to(ROOT)} failed:\n{result.stderr}"
    return result.stdout


@cache
def rendered(target: str) -> tuple[dict, ...]:
    return tuple(doc for doc in yaml.safe_load_all(kustomize(TARGETS[target])) if doc)


def of_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def by_name(objects, kind):
    return {o["metadata"]["name"]: o for o in of_kind(objects, kind)}


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def pod_labels(obj):
    return obj["spec"]["template"]["metadata"].get("labels", {})


def containers(obj):
    spec = pod_spec(obj)
    return spec.get("initContainers", []) + spec["containers"]


def name_of(obj):
    return f"{obj['kind']}/{obj['metadata']['name']}"


def selector_matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def validation_problem(obj) -> str | None:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return f"{name_of(obj)}: no {K8S_VERSION} schema for {obj.get('apiVersion')} {obj.get('kind')}"
    except kubernetes_validate.ValidationError as exc:
        # A jsonschema ValidationError: its message without the (huge) schema dump.
        where = "/".join(str(p) for p in exc.path) or "(root)"
        return f"{name_of(obj)}: {where}: {exc.message}"
    return None


ALL_TARGETS = pytest.mark.parametrize("target", TARGETS)


# --- files and rendering ---------------------------------------------------------


@pytest.mark.parametrize("name", CONTRACT_FILES)
def test_every_file_the_makefile_applies_exists(name):
    assert (K8S / name).is_file(), f"k8s/{name} is missing"


@pytest.mark.parametrize("name", SEED_FLAT_FILES)
def test_every_flat_file_stands_alone_in_namespace_goshop(name):
    # `kubectl apply -f k8s/<file>` without -n must land in goshop.
    for doc in yaml.safe_load_all((K8S / name).read_text()):
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"k8s/{name}: {name_of(doc)} has no namespace goshop"


def test_the_base_lists_every_manifest_at_the_k8s_root():
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name not in ("kustomization.yaml", "kind-config.yaml"))
    assert sorted(listed) == on_disk


@pytest.mark.parametrize("overlay", ["dev", "hybrid"])
def test_overlays_list_exactly_the_base_files(overlay):
    base = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    resources = yaml.safe_load((TARGETS[overlay] / "kustomization.yaml").read_text())["resources"]
    from_base = [r.removeprefix("../../") for r in resources if r.endswith(".yaml")]
    assert from_base == base, f"overlays/{overlay} drifted from the base's resource list"


def test_no_kustomization_references_a_remote_url_or_the_downloaded_ingress_manifest():
    for path in K8S.rglob("kustomization.yaml"):
        text = path.read_text()
        assert not re.search(r"https?://|github\.com/", text), f"{path.relative_to(ROOT)} references a remote URL"
        assert "ingress-nginx-kind.yaml" not in yaml.safe_dump(yaml.safe_load(text)), path


@ALL_TARGETS
def test_renders_and_every_object_passes_the_strict_schema(target):
    objects = rendered(target)
    assert objects, f"{target} rendered nothing"
    problems = [p for p in map(validation_problem, objects) if p]
    assert not problems, "\n".join(problems)


def test_the_downloaded_ingress_nginx_manifest_validates_when_present():
    path = K8S / "infra" / "ingress-nginx-kind.yaml"
    if not path.exists():
        pytest.skip("k8s/infra/ingress-nginx-kind.yaml not downloaded (make k8s-ingress-nginx-download)")
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    problems = [p for p in map(validation_problem, docs) if p]
    assert not problems, "\n".join(problems)


def test_kind_config_names_the_cluster_and_readies_the_ingress_node():
    config = yaml.safe_load((K8S / "kind-config.yaml").read_text())
    assert (config["kind"], config["apiVersion"], config["name"]) == ("Cluster", "kind.x-k8s.io/v1alpha4", "goshop")
    control = [n for n in config["nodes"] if n["role"] == "control-plane"]
    assert len(control) == 1
    assert control[0]["labels"]["ingress-ready"] == "true"
    mapped = {(m["containerPort"], m["hostPort"]) for m in control[0]["extraPortMappings"]}
    assert {(80, 80), (443, 443)} <= mapped


# --- cross-object checks -----------------------------------------------------------


@ALL_TARGETS
def test_every_object_is_in_namespace_goshop(target):
    for obj in rendered(target):
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{target}: {name_of(obj)}"
    assert list(by_name(rendered(target), "Namespace")) == [NAMESPACE]


@ALL_TARGETS
def test_every_service_selects_exactly_one_workload_and_no_job(target):
    objects = rendered(target)
    workloads = [o for o in objects if o["kind"] in WORKLOAD_KINDS]
    jobs = of_kind(objects, "Job")
    for service in of_kind(objects, "Service"):
        selector = service["spec"].get("selector", {})
        matched = [name_of(w) for w in workloads if selector_matches(selector, pod_labels(w))]
        assert len(matched) == 1, f"{target}: Service {service['metadata']['name']} selects {matched or 'nothing'}"
        stray = [name_of(j) for j in jobs if selector_matches(selector, pod_labels(j))]
        assert not stray, f"{target}: Service {service['metadata']['name']} also selects {stray}"


@ALL_TARGETS
def test_service_target_ports_are_container_ports_of_the_selected_pods(target):
    objects = rendered(target)
    workloads = [o for o in objects if o["kind"] in WORKLOAD_KINDS]
    for service in of_kind(objects, "Service"):
        (workload,) = [w for w in workloads if selector_matches(service["spec"]["selector"], pod_labels(w))]
        ports = [p for c in containers(workload) for p in c.get("ports", [])]
        names = {p.get("name") for p in ports}
        numbers = {p["containerPort"] for p in ports}
        for port in service["spec"]["ports"]:
            wanted = port.get("targetPort", port["port"])
            assert wanted in (names if isinstance(wanted, str) else numbers), (
                f"{target}: Service {service['metadata']['name']} targets {wanted!r}, "
                f"{name_of(workload)} exposes {sorted(numbers)} / {sorted(n for n in names if n)}"
            )


@ALL_TARGETS
def test_http_services_have_their_contract_ports(target):
    services = by_name(rendered(target), "Service")
    for name, port in HTTP_SERVICES.items():
        assert name in services, f"{target}: no Service {name}"
        assert [p["port"] for p in services[name]["spec"]["ports"]] == [port]
    assert "outboxer" not in services


def _references(obj):
    """(kind, name, key or None) of every ConfigMap/Secret a pod template uses."""
    spec = pod_spec(obj)
    for container in containers(obj):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                yield "ConfigMap", source["configMapRef"]["name"], None
            if "secretRef" in source:
                yield "Secret", source["secretRef"]["name"], None
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                yield "ConfigMap", ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"]
            if "secretKeyRef" in ref:
                yield "Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]["name"], None
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"], None


@ALL_TARGETS
def test_every_referenced_configmap_secret_and_key_exists(target):
    objects = rendered(target)
    stores = {
        kind: {n: {**o.get("data", {}), **o.get("stringData", {})} for n, o in by_name(objects, kind).items()}
        for kind in ("ConfigMap", "Secret")
    }
    for obj in objects:
        if obj["kind"] not in (*WORKLOAD_KINDS, "Job"):
            continue
        for kind, name, key in _references(obj):
            if kind == "Secret" and target in OPERATOR_SECRETS_TARGETS:
                continue  # the operator creates them (test_production_renders_no_secret)
            assert name in stores[kind], f"{target}: {name_of(obj)} uses {kind} {name}, which does not exist"
            if key is not None:
                assert key in stores[kind][name], f"{target}: {name_of(obj)} uses {kind} {name} key {key}: missing"


@ALL_TARGETS
def test_every_ingress_backend_is_an_existing_service_port(target):
    objects = rendered(target)
    services = by_name(objects, "Service")
    ingresses = of_kind(objects, "Ingress")
    assert sorted(i["metadata"]["name"] for i in ingresses) == ["gateway", "opsassistant", "users"]
    for ingress in ingresses:
        assert ingress["spec"]["ingressClassName"] == "nginx"
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] in services, f"{target}: Ingress {ingress['metadata']['name']} -> {backend}"
                ports = services[backend["name"]]["spec"]["ports"]
                port = backend["port"]
                assert any(p["port"] == port.get("number") or p.get("name") == port.get("name") for p in ports), (
                    f"{target}: Ingress {ingress['metadata']['name']} -> {backend['name']}:{port}, not a Service port"
                )


def _forwards(path: dict, request_path: str) -> bool:
    """Whether an Ingress path sends ``request_path`` to its backend."""
    if path["pathType"] == "Exact":
        return request_path == path["path"]
    if path["pathType"] == "Prefix":
        # Element-wise: /v1/users matches /v1/users and /v1/users/..., not /v1/usersX.
        prefix = path["path"].rstrip("/")
        return request_path == prefix or request_path.startswith(f"{prefix}/")
    # ImplementationSpecific (nginx: a prefix or a regex): assume the widest.
    return True


@ALL_TARGETS
def test_ingresses_publish_only_the_public_paths(target):
    ingresses = by_name(rendered(target), "Ingress")
    for name, ingress in ingresses.items():
        paths = {(p["path"], p["pathType"]) for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
        assert paths == INGRESS_PATHS[name], f"{target}: Ingress {name} publishes {sorted(paths)}"


@ALL_TARGETS
def test_no_ingress_path_reaches_metrics_or_the_database_ping(target):
    reached = {
        (ingress["metadata"]["name"], internal)
        for ingress in of_kind(rendered(target), "Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
        for internal in INTERNAL_PATHS
        if _forwards(path, internal)
    }
    # Only the gateway's `/` forwards them, and the gateway routes neither on
    # its public app (test_the_gateways_public_app_routes_no_internal_path).
    assert reached <= {("gateway", internal) for internal in INTERNAL_PATHS}, f"{target}: {sorted(reached)}"


def test_the_ingress_path_check_sees_what_nginx_would_forward():
    # The check above is only as good as _forwards: `/` and a wrong prefix must be caught.
    assert _forwards({"path": "/", "pathType": "Prefix"}, "/metrics")
    assert _forwards({"path": "/v1", "pathType": "Prefix"}, "/v1/db/ping")
    assert _forwards({"path": "/metrics", "pathType": "Exact"}, "/metrics")
    assert _forwards({"path": "/v1/db", "pathType": "ImplementationSpecific"}, "/v1/db/ping")
    assert not _forwards({"path": "/v1/users", "pathType": "Prefix"}, "/v1/db/ping")
    assert not _forwards({"path": "/v1/users", "pathType": "Prefix"}, "/v1/usersX")
    assert not _forwards({"path": "/ready", "pathType": "Exact"}, "/ready/x")


def test_the_gateways_public_app_routes_no_internal_path():
    from pyramid.interfaces import IRoutesMapper

    from goshop_gateway import main

    app = main({})
    routes = app.registry.getUtility(IRoutesMapper).get_routes()
    assert any(route.match("/v1/orders") is not None for route in routes), "the check must see the real routes"
    for internal in INTERNAL_PATHS:
        assert [r.name for r in routes if r.match(internal) is not None] == [], internal


@ALL_TARGETS
def test_no_service_routes_to_a_metrics_port(target):
    objects = rendered(target)
    for service in of_kind(objects, "Service"):
        for port in service["spec"]["ports"]:
            wanted = port.get("targetPort", port["port"])
            where = f"{target}: Service {service['metadata']['name']} -> {wanted}"
            assert wanted != "metrics", where
            assert wanted not in METRICS_PORTS.values(), where
            assert port["port"] not in METRICS_PORTS.values(), where


@ALL_TARGETS
def test_prometheus_annotations_name_each_pods_internal_port(target):
    for deployment in of_kind(rendered(target), "Deployment"):
        name = deployment["metadata"]["name"]
        if name not in DEPLOYMENTS:
            continue
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/path"] == "/metrics", name
        (container,) = pod_spec(deployment)["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        # HTTP services: the metrics port, never the public one; workers: their health port.
        wanted = ports["metrics"] if name in METRICS_PORTS else DEPLOYMENTS[name][2]
        assert int(annotations["prometheus.io/port"]) == wanted, f"{target}: {name}"


# --- workloads ---------------------------------------------------------------------


@ALL_TARGETS
def test_the_contract_deployments_run_the_services_real_commands(target):
    deployments = by_name(rendered(target), "Deployment")
    for name, (image, command, port) in DEPLOYMENTS.items():
        assert name in deployments, f"{target}: no Deployment {name}"
        (container,) = pod_spec(deployments[name])["containers"]
        assert container["image"].split(":")[0] == image, f"{name}: image {container['image']}"
        assert container["image"] == f"{image}:{VERSION}", f"{name}: the image is goshop's version, never :latest"
        assert container["imagePullPolicy"] == "IfNotPresent", f"{name}: kind-loaded images must not be pulled"
        assert container.get("workingDir", "/app") == "/app"
        assert container["command"] == ["python", "-m", *command.split()], name
        ports = [(p["name"], p["containerPort"]) for p in container["ports"]]
        metrics = [("metrics", METRICS_PORTS[name])] if name in METRICS_PORTS else []
        assert ports == [("http", port), *metrics], name


def _module_exists(module: str) -> bool:
    return (ROOT / Path(*module.split("."))).with_suffix(".py").is_file() or (
        ROOT / Path(*module.split(".")) / "__main__.py"
    ).is_file()


def test_commands_name_modules_and_ini_files_that_exist():
    for name, (_image, command, port) in DEPLOYMENTS.items():
        module, *args = command.split()
        assert _module_exists(module), f"{name}: no module {module}"
        for arg in args:
            if arg.endswith(".ini"):
                assert (ROOT / arg).is_file(), f"{name}: no {arg}"
                listen = re.search(r"^listen = \S+:(\d+)$", (ROOT / arg).read_text(), re.M)
                assert listen, f"{name}: {arg} has no listen line"
                assert int(listen.group(1)) == port, f"{name}: {arg} listens on {listen[1]}"
                metrics = re.search(r"^goshop\.metrics_port = (\d+)$", (ROOT / arg).read_text(), re.M)
                assert metrics, f"{name}: {arg} has no goshop.metrics_port"
                assert int(metrics.group(1)) == METRICS_PORTS[name], f"{name}: {arg} serves metrics on {metrics[1]}"
    for service in MIGRATIONS:
        assert _module_exists(f"goshop_{service}.migrate")


@ALL_TARGETS
def test_every_deployment_is_probed_bounded_and_unprivileged(target):
    for deployment in of_kind(rendered(target), "Deployment"):
        name = deployment["metadata"]["name"]
        spec = pod_spec(deployment)
        for container in spec["containers"]:
            where = f"{target}: Deployment {name} container {container['name']}"
            assert "readinessProbe" in container, f"{where}: no readinessProbe"
            assert "livenessProbe" in container, f"{where}: no livenessProbe"
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{where}: resources.{part}"
            pod_ctx, ctx = spec.get("securityContext", {}), container.get("securityContext", {})
            assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot"
            assert ctx.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
            assert "ALL" in ctx.get("capabilities", {}).get("drop", []), f"{where}: capabilities.drop ALL"


@ALL_TARGETS
def test_goshop_containers_probe_ready_and_live_and_keep_the_root_filesystem_read_only(target):
    objects = rendered(target)
    goshop = [o for o in objects if o["kind"] in ("Deployment", "Job") and o["metadata"]["name"] in DEPLOYMENTS]
    goshop += [by_name(objects, "Job")[f"{s}-migrate"] for s in MIGRATIONS]
    for obj in goshop:
        spec = pod_spec(obj)
        (container,) = spec["containers"]
        where = f"{target}: {name_of(obj)}"
        if obj["kind"] == "Deployment":
            assert container["readinessProbe"]["httpGet"]["path"] == "/ready", where
            assert container["livenessProbe"]["httpGet"]["path"] == "/live", where
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["port"] in ("http", container["ports"][0]["containerPort"]), where
        ctx = container["securityContext"]
        uid = ctx.get("runAsUser", spec.get("securityContext", {}).get("runAsUser"))
        assert uid == 10001, f"{where}: runs as {uid}"
        assert ctx["readOnlyRootFilesystem"] is True, where
        tmp = [m["name"] for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]  # noqa: S108 (a pod path)
        assert tmp, f"{where}: read-only root needs a writable /tmp"
        (volume,) = [v for v in spec["volumes"] if v["name"] == tmp[0]]
        assert "emptyDir" in volume, where


@ALL_TARGETS
def test_migration_jobs_run_migrate_up_with_their_service_image(target):
    jobs = by_name(rendered(target), "Job")
    for service in MIGRATIONS:
        job = jobs[f"{service}-migrate"]
        (container,) = pod_spec(job)["containers"]
        assert container["image"].split(":")[0] == f"goshop-{service}"
        assert container["command"] == ["python", "-m", f"goshop_{service}.migrate", "up"]
        assert pod_spec(job)["restartPolicy"] in ("OnFailure", "Never")
        assert job["spec"].get("backoffLimit", 6) >= 1, "a Job started before PostgreSQL must retry"


# --- settings ----------------------------------------------------------------------


def _env_of(objects, workload):
    """The environment a workload's container gets: its ConfigMaps and Secret keys, resolved."""
    configmaps, secrets = by_name(objects, "ConfigMap"), by_name(objects, "Secret")
    env = {}
    (container,) = pod_spec(workload)["containers"]
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]]["data"])
        if "secretRef" in source:
            name = source["secretRef"]["name"]
            env.update(secrets[name]["stringData"] if name in secrets else _operator_secret(name))
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["name"] not in secrets:
            # A Secret the operator creates (the production overlay): a value of that kind.
            env[item["name"]] = _operator_secret(ref["name"])[item["name"]]
        elif ref:
            env[item["name"]] = secrets[ref["name"]]["stringData"][ref["key"]]
        elif "value" in item:
            env[item["name"]] = item["value"]
    return env


@ALL_TARGETS
def test_every_goshop_setting_is_known_and_parses(target):
    from goshop_common.observability.tracing import OTEL_VARIABLES
    from goshop_devtools.settings import SPECS, settings_of

    # OpenTelemetry's own variables are the SDK's to read, not goshop settings.
    known = {spec.env for spec in SPECS} | {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", *OTEL_VARIABLES}
    objects = rendered(target)
    for workload in [*of_kind(objects, "Deployment"), *of_kind(objects, "Job")]:
        if not pod_spec(workload)["containers"][0]["image"].startswith("goshop-"):
            continue
        env = _env_of(objects, workload)
        unknown = set(env) - known
        assert not unknown, f"{target}: {name_of(workload)} sets unknown settings {sorted(unknown)}"
        # A malformed value raises, naming the setting; in production also a missing
        # secret or a value the repository holds.
        settings_of({}, env, service=PROCESSES[workload["metadata"]["name"]])


@ALL_TARGETS
def test_service_urls_in_settings_point_at_existing_services(target):
    objects = rendered(target)
    services = by_name(objects, "Service")
    for configmap in of_kind(objects, "ConfigMap"):
        for key, value in configmap.get("data", {}).items():
            match = re.fullmatch(r"https?://([a-z0-9-]+):(\d+)(/.*)?", value)
            if not match:
                continue
            host, port = match.group(1), int(match.group(2))
            assert host in services, f"{target}: {configmap['metadata']['name']} {key}={value}: no Service {host}"
            assert port in [p["port"] for p in services[host]["spec"]["ports"]], f"{key}={value}"


@pytest.mark.parametrize("target", ["dev", "hybrid"])
def test_infra_addresses_match_the_overlay(target):
    objects = rendered(target)
    wanted = INFRA_ADDRESSES[target]
    services = by_name(objects, "Service")
    for workload in of_kind(objects, "Deployment") + of_kind(objects, "Job"):
        if not pod_spec(workload)["containers"][0]["image"].startswith("goshop-"):
            continue
        env = _env_of(objects, workload)
        if "GOSHOP_DATABASE_URL" in env:
            host = re.search(r"@([^/]+)/", env["GOSHOP_DATABASE_URL"]).group(1)
            assert host == wanted["postgres"], f"{target}: {name_of(workload)} uses the database at {host}"
        if "GOSHOP_KAFKA_BOOTSTRAP" in env:
            assert env["GOSHOP_KAFKA_BOOTSTRAP"] == wanted["kafka"], f"{target}: {name_of(workload)}"
    for address in wanted.values():
        host, port = address.split(":")
        in_cluster = host in services
        assert in_cluster == (target == "dev"), f"{target}: Service {host} should {'' if in_cluster else 'not '}exist"
        if in_cluster:
            assert int(port) in [p["port"] for p in services[host]["spec"]["ports"]]


def test_every_worker_that_needs_kafka_or_the_database_gets_it():
    objects = rendered("base")
    deployments = by_name(objects, "Deployment")
    for name in ("orders", "payments", "outboxer", "orders-consumer", "payments-consumer"):
        env = _env_of(objects, deployments[name])
        assert {"GOSHOP_DATABASE_URL", "GOSHOP_KAFKA_BOOTSTRAP"} <= set(env), name
    for name in ("users", "opsassistant", "maintenance"):
        assert "GOSHOP_DATABASE_URL" in _env_of(objects, deployments[name]), name
    assert "GOSHOP_OPS_TOKEN" in _env_of(objects, deployments["opsassistant"])


@ALL_TARGETS
def test_each_workload_connects_as_its_own_database_role_from_a_secret_of_its_own(target):
    from goshop_common.db import roles

    objects = rendered(target)
    secret_of = {}
    for workload in [*of_kind(objects, "Deployment"), *of_kind(objects, "Job")]:
        name = workload["metadata"]["name"]
        if not pod_spec(workload)["containers"][0]["image"].startswith("goshop-"):
            continue
        env = _env_of(objects, workload)
        if name == "db-roles":
            # The administrator, with every role's password.
            assert urlsplit(env["GOSHOP_DATABASE_URL"]).username not in roles.PASSWORD_SETTINGS, target
            assert {
                f"GOSHOP_DB_{role.removeprefix('goshop_').upper()}_PASSWORD" for role in roles.PASSWORD_SETTINGS
            } < set(env)
            continue
        process = PROCESSES[name]
        if process not in roles.PROCESS_ROLES:
            assert "GOSHOP_DATABASE_URL" not in env, f"{target}: {name} uses no database"
            continue
        assert urlsplit(env["GOSHOP_DATABASE_URL"]).username == roles.PROCESS_ROLES[process], f"{target}: {name}"
        (container,) = pod_spec(workload)["containers"]
        (ref,) = [
            i["valueFrom"]["secretKeyRef"]["name"] for i in container["env"] if i["name"] == "GOSHOP_DATABASE_URL"
        ]
        secret_of[name] = ref
    # One Secret per service: a consumer shares its service's, the migrate Jobs theirs.
    assert len(set(secret_of.values())) == len({roles.PROCESS_ROLES[PROCESSES[n]] for n in secret_of})


def test_the_db_roles_job_runs_the_bootstrap():
    (job,) = [j for j in of_kind(rendered("base"), "Job") if j["metadata"]["name"] == "db-roles"]
    (container,) = pod_spec(job)["containers"]
    assert container["command"] == ["python", "-m", "goshop_common.db.roles"]
    assert job["spec"].get("backoffLimit", 6) >= 1, "a Job started before PostgreSQL must retry"


def test_the_dev_overlay_sends_every_goshop_processs_traces_to_its_jaeger():
    objects = rendered("dev")
    services = by_name(objects, "Service")
    assert 4318 in [p["port"] for p in services["jaeger"]["spec"]["ports"]]
    for workload in of_kind(objects, "Deployment"):
        if pod_spec(workload)["containers"][0]["image"].startswith("goshop-"):
            assert _env_of(objects, workload).get("OTEL_EXPORTER_OTLP_ENDPOINT") == "http://jaeger:4318", name_of(
                workload
            )
    (jaeger,) = pod_spec(by_name(objects, "Deployment")["jaeger"])["containers"]
    assert re.fullmatch(r"jaegertracing/jaeger:\d+\.\d+\.\d+", jaeger["image"]), "pinned by tag"


def test_the_dev_secret_is_marked_development_only():
    (secret,) = [s for s in rendered("base") if s["kind"] == "Secret" and s["metadata"]["name"] == "goshop-dev-secrets"]
    values = secret["stringData"]
    assert values["GOSHOP_OPS_TOKEN"].startswith("dev-only-")
    assert len(values["GOSHOP_OPS_TOKEN"]) >= 32, "the ops token must be 32+ characters even in development"
    assert secret["metadata"]["annotations"]["goshop.dev/development-only"] == "true"


def test_the_dev_overlay_creates_the_topics_and_their_dead_letter_topics_with_three_partitions():
    (job,) = [o for o in rendered("dev") if o["kind"] == "Job" and o["metadata"]["name"] == "kafka-topics"]
    script = " ".join(pod_spec(job)["containers"][0]["command"])
    from goshop_common.messaging.kafka import PARTITIONS
    from goshop_domain.events import DEAD_LETTER_TOPICS, TOPICS

    # Words, not substrings: "orders.events" is in "orders.events.dlq".
    words = set(script.replace(";", " ").split())
    assert set(TOPICS + DEAD_LETTER_TOPICS) <= words
    assert f"--partitions {PARTITIONS}" in script


MONITORING_CONFIGMAPS = {
    "prometheus-config": ("monitoring/prometheus/prometheus.yml", "monitoring/prometheus/alerts.yml"),
    "grafana-dashboards": ("monitoring/grafana/dashboards/goshop.json",),
    "fluent-bit-config": ("monitoring/fluent-bit/fluent-bit.conf", "monitoring/fluent-bit/parsers.conf"),
}


@pytest.mark.parametrize("overlay", ["dev", "hybrid"])
def test_overlays_carry_the_monitoring_files_as_configmaps(overlay):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed: cannot render the overlays")
    rendered = subprocess.run(
        [kubectl, "kustomize", "--load-restrictor=LoadRestrictionsNone", str(ROOT / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    maps = {
        doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(rendered) if doc and doc.get("kind") == "ConfigMap"
    }
    for name, files in MONITORING_CONFIGMAPS.items():
        assert maps[name]["metadata"]["namespace"] == "goshop"
        for path in files:
            # The very file, not a copy that could drift.
            assert maps[name]["data"][Path(path).name] == (ROOT / path).read_text()


# --- the network: closed by default (k8s/networkpolicies.yaml, k8s/infra/networkpolicies.yaml) ---

# Pods outside namespace goshop that the policies name, and one they must not let in.
INGRESS_CONTROLLER = (
    {"kubernetes.io/metadata.name": "ingress-nginx"},
    {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"},
)
PROMETHEUS = ({"kubernetes.io/metadata.name": "monitoring"}, {"app.kubernetes.io/name": "prometheus"})
DNS = ({"kubernetes.io/metadata.name": "kube-system"}, {"k8s-app": "kube-dns"})
OUTSIDERS = {
    "ingress-nginx/controller": INGRESS_CONTROLLER,
    "monitoring/prometheus": PROMETHEUS,
    # Not the controller, and a pod elsewhere wearing the gateway's labels: neither gets in.
    "ingress-nginx/admission": ({"kubernetes.io/metadata.name": "ingress-nginx"}, {"app.kubernetes.io/name": "x"}),
    "default/gateway": ({"kubernetes.io/metadata.name": "default"}, {"app": "gateway"}),
}
GOSHOP_NAMESPACE_LABELS = {"kubernetes.io/metadata.name": NAMESPACE, "app.kubernetes.io/part-of": "goshop"}
# Deployment/Job name -> the process it runs (goshop_devtools.settings names them so).
PROCESSES = {
    "users": "users",
    "orders": "orders",
    "payments": "payments",
    "gateway": "gateway",
    "opsassistant": "ops",
    "outboxer": "outboxer",
    "orders-consumer": "orders-consumer",
    "payments-consumer": "payments-consumer",
    "maintenance": "maintenance",
    **{f"{s}-migrate": "migrate" for s in MIGRATIONS},
    "db-roles": "db-roles",
}
# Who may open a connection to each goshop port, and nobody else.
REACHABLE_BY = {
    ("gateway", 8080): {"ingress-nginx/controller"},
    # The gateway, users' own Ingress, and the JWKS that orders' and payments' token checks read.
    ("users", 8081): {"gateway", "ingress-nginx/controller", "orders", "payments"},
    ("orders", 8082): {"gateway"},
    ("payments", 8083): {"gateway"},
    ("opsassistant", 8085): {"gateway", "ingress-nginx/controller"},
    **{(name, port): {"monitoring/prometheus"} for name, port in METRICS_PORTS.items()},
    **{(name, DEPLOYMENTS[name][2]): {"monitoring/prometheus"} for name in DEPLOYMENTS if name not in METRICS_PORTS},
}


def _selects(selector: dict | None, labels: dict) -> bool:
    """A Kubernetes label selector against labels ({} selects everything)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        held = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not held:
            return False
    return True


def _peer_matches(peer: dict, namespace_labels: dict, pod: dict) -> bool:
    """Whether a NetworkPolicy peer (from/to entry) names the pod ``pod`` in a namespace
    with ``namespace_labels``. A policy's own namespace is goshop."""
    assert "ipBlock" not in peer, "an ipBlock names no pod: this check would have to learn addresses"
    if "namespaceSelector" in peer:
        in_namespace = _selects(peer["namespaceSelector"], namespace_labels)
    else:
        in_namespace = namespace_labels.get("kubernetes.io/metadata.name") == NAMESPACE
    return in_namespace and _selects(peer.get("podSelector"), pod)


def _port_matches(ports: list | None, port: int, protocol: str) -> bool:
    return not ports or any(p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports)


def _policies(objects, direction: str, pod: dict):
    return [
        p["spec"]
        for p in of_kind(objects, "NetworkPolicy")
        if direction in p["spec"].get("policyTypes", ["Ingress"]) and _selects(p["spec"]["podSelector"], pod)
    ]


def _allowed(objects, direction: str, pod: dict, peer_ns: dict, peer_pod: dict, port: int, protocol: str) -> bool:
    """NetworkPolicy semantics for one goshop pod: not isolated in that direction, or
    some rule of some policy selecting it names the peer and the port."""
    policies = _policies(objects, direction, pod)
    if not policies:
        return True
    key = "from" if direction == "Ingress" else "to"
    rules = [r for spec in policies for r in spec.get(direction.lower(), [])]
    return any(
        _port_matches(r.get("ports"), port, protocol)
        and (key not in r or any(_peer_matches(peer, peer_ns, peer_pod) for peer in r[key]))
        for r in rules
    )


def _goshop_pods(objects) -> dict[str, dict]:
    return {o["metadata"]["name"]: pod_labels(o) for o in objects if o["kind"] in (*WORKLOAD_KINDS, "Job")}


def _who_reaches(objects, target: str, port: int, protocol: str = "TCP") -> set[str]:
    """Every pod (goshop's, and the outsiders) that may open a connection to ``target:port``."""
    pods = _goshop_pods(objects)
    destination = pods[target]
    found = set()
    for name, labels in pods.items():
        if _allowed(objects, "Egress", labels, GOSHOP_NAMESPACE_LABELS, destination, port, protocol) and _allowed(
            objects, "Ingress", destination, GOSHOP_NAMESPACE_LABELS, labels, port, protocol
        ):
            found.add(name)
    for name, (namespace, labels) in OUTSIDERS.items():
        # Their egress is their namespace's business; ours is who we let in.
        if _allowed(objects, "Ingress", destination, namespace, labels, port, protocol):
            found.add(name)
    return found


def _egress_to_outside(objects, source: str, port: int, peer=(None, None), protocol: str = "TCP") -> bool:
    namespace, labels = peer
    pod = _goshop_pods(objects)[source]
    policies = _policies(objects, "Egress", pod)
    if not policies:
        return True
    for rule in (r for spec in policies for r in spec.get("egress", [])):
        if not _port_matches(rule.get("ports"), port, protocol):
            continue
        if "to" not in rule:
            return True  # any address: what the base gives PostgreSQL and Kafka outside the cluster
        if namespace is not None and any(_peer_matches(p, namespace, labels) for p in rule["to"]):
            return True
    return False


def test_the_policy_evaluator_follows_networkpolicy_semantics():
    # The graph tests are only as good as this: check it on hand-made policies.
    deny = {"kind": "NetworkPolicy", "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
    allow = {
        "kind": "NetworkPolicy",
        "spec": {
            "podSelector": {"matchLabels": {"app": "b"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": 80}]}],
        },
    }
    a, b = {"app": "a"}, {"app": "b"}
    assert _allowed([], "Ingress", b, GOSHOP_NAMESPACE_LABELS, a, 80, "TCP"), "no policy: open"
    assert not _allowed([deny], "Ingress", b, GOSHOP_NAMESPACE_LABELS, a, 80, "TCP")
    assert _allowed([deny, allow], "Ingress", b, GOSHOP_NAMESPACE_LABELS, a, 80, "TCP")
    assert not _allowed([deny, allow], "Ingress", b, GOSHOP_NAMESPACE_LABELS, a, 81, "TCP"), "another port"
    assert not _allowed([deny, allow], "Ingress", b, {"kubernetes.io/metadata.name": "x"}, a, 80, "TCP"), "another ns"
    assert not _allowed([deny, allow], "Ingress", b, GOSHOP_NAMESPACE_LABELS, a, 80, "UDP")
    assert _selects({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a"]}]}, a)
    assert not _selects({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]}, a)


@ALL_TARGETS
def test_every_pod_is_closed_by_default_both_ways(target):
    objects = rendered(target)
    policies = by_name(objects, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {}, "default-deny selects every pod of the namespace"
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert not deny.get("ingress"), "default-deny lets nothing in"
    assert not deny.get("egress"), "default-deny lets nothing out"
    for name, labels in _goshop_pods(objects).items():
        for direction in ("Ingress", "Egress"):
            assert _policies(objects, direction, labels), f"{target}: {name} is not isolated for {direction}"


@ALL_TARGETS
def test_only_the_named_peers_reach_each_goshop_port(target):
    objects = rendered(target)
    for (name, port), wanted in REACHABLE_BY.items():
        assert _who_reaches(objects, name, port) == wanted, f"{target}: who reaches {name}:{port}"


@ALL_TARGETS
def test_users_public_port_is_reached_by_the_gateway_and_no_stranger(target):
    # The finding this fixes: any pod could reach users:8081 with its own X-Forwarded-For.
    reached = _who_reaches(rendered(target), "users", 8081)
    assert "gateway" in reached
    assert not reached & {"outboxer", "orders-consumer", "payments-consumer", "maintenance", "opsassistant"}
    assert not reached & {"default/gateway", "ingress-nginx/admission", "monitoring/prometheus"}


@ALL_TARGETS
def test_no_goshop_port_is_open_to_the_rest_of_the_cluster(target):
    objects = rendered(target)
    for name, labels in _goshop_pods(objects).items():
        for rule in (r for spec in _policies(objects, "Ingress", labels) for r in spec.get("ingress", [])):
            assert rule.get("from"), f"{target}: {name} admits anyone on {rule.get('ports')}"
            for peer in rule["from"]:
                assert peer.get("podSelector") is not None, f"{target}: {name} admits a whole namespace: {peer}"


@ALL_TARGETS
def test_every_pod_resolves_names_through_the_cluster_dns_only(target):
    objects = rendered(target)
    for name in _goshop_pods(objects):
        assert _egress_to_outside(objects, name, 53, DNS, "UDP"), f"{target}: {name} cannot resolve names"
        assert _egress_to_outside(objects, name, 53, DNS, "TCP"), f"{target}: {name}: DNS over TCP"
        assert not _egress_to_outside(objects, name, 53, PROMETHEUS, "UDP"), f"{target}: {name}: any DNS server"


@ALL_TARGETS
def test_each_process_reaches_exactly_the_infrastructure_its_settings_declare(target):
    from goshop_devtools.settings import SPECS

    uses = {spec.env: set(spec.services) for spec in SPECS}
    objects = rendered(target)
    in_cluster = "postgres" in _goshop_pods(objects)
    for name, process in PROCESSES.items():
        for setting, (infra, port) in {
            "GOSHOP_DATABASE_URL": ("postgres", 5432),
            "GOSHOP_KAFKA_BOOTSTRAP": ("kafka", 9092),
        }.items():
            wanted = process in uses[setting]
            if in_cluster:
                reached = name in _who_reaches(objects, infra, port)
            else:
                reached = _egress_to_outside(objects, name, port)
            assert reached == wanted, f"{target}: {name} reaches {infra}:{port}: {reached}, needs it: {wanted}"
        verifies = process in uses["GOSHOP_JWKS_URL"]
        assert (name in _who_reaches(objects, "users", 8081)) == verifies, f"{target}: {name} and the JWKS"


def test_the_in_cluster_infrastructure_admits_only_its_clients():
    from goshop_devtools.settings import SPECS

    uses = {spec.env: set(spec.services) for spec in SPECS}
    objects = rendered("dev")
    for infra, port, setting, extra in (
        ("postgres", 5432, "GOSHOP_DATABASE_URL", set()),
        ("kafka", 9092, "GOSHOP_KAFKA_BOOTSTRAP", {"kafka-topics"}),
    ):
        clients = {name for name, process in PROCESSES.items() if process in uses[setting]}
        assert _who_reaches(objects, infra, port) == clients | extra, f"who reaches {infra}:{port}"
    # Every process exports its traces (the dev overlay's OTEL endpoint), nothing else does;
    # the roles bootstrap, a few statements once, traces nothing.
    assert _who_reaches(objects, "jaeger", 4318) == set(PROCESSES) - {"db-roles"}
    assert not _who_reaches(objects, "jaeger", 16686), "the UI is for kubectl port-forward"


@ALL_TARGETS
def test_gateway_reaches_exactly_its_upstreams(target):
    objects = rendered(target)
    configmap = by_name(objects, "ConfigMap")["gateway-config"]["data"]
    upstreams = {
        (m.group(1), int(m.group(2)))
        for key, value in configmap.items()
        if key.endswith("_URL") and (m := re.fullmatch(r"http://([a-z0-9-]+):(\d+)(/.*)?", value))
    }
    pods = _goshop_pods(objects)
    reached = {(name, port) for (name, port) in REACHABLE_BY if "gateway" in _who_reaches(objects, name, port)}
    assert reached == upstreams, f"{target}: the gateway reaches {sorted(reached)}"
    assert set(pods) >= {name for name, _ in upstreams}


# --- trust, service accounts, images ---------------------------------------------


def _pod_network() -> str:
    return yaml.safe_load((K8S / "kind-config.yaml").read_text())["networking"]["podSubnet"]


@ALL_TARGETS
def test_services_trust_forwarding_headers_from_the_pod_network_alone(target):
    # The pod network is the narrowest CIDR the manifests can name for the gateway's and the
    # ingress controller's pods; the policies above decide which pods in it get through.
    objects = rendered(target)
    configmaps = by_name(objects, "ConfigMap")
    for name in HTTP_SERVICES:
        trusted = configmaps[f"{name}-config"]["data"].get("GOSHOP_TRUSTED_PROXIES")
        assert trusted == _pod_network(), f"{target}: {name} trusts {trusted}"
    for name in ("outboxer-config", "maintenance-config"):
        assert "GOSHOP_TRUSTED_PROXIES" not in configmaps[name]["data"], f"{target}: {name} serves no proxy"


@ALL_TARGETS
def test_no_pod_mounts_a_service_account_token(target):
    for obj in rendered(target):
        if obj["kind"] in (*WORKLOAD_KINDS, "Job"):
            assert pod_spec(obj).get("automountServiceAccountToken") is False, f"{target}: {name_of(obj)}"


@ALL_TARGETS
def test_every_image_carries_a_version_tag(target):
    for obj in rendered(target):
        if obj["kind"] not in (*WORKLOAD_KINDS, "Job"):
            continue
        for container in containers(obj):
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name, f"{target}: {name_of(obj)} runs {image}: untagged is :latest"
            assert "/" not in tag, f"{target}: {name_of(obj)} runs {image}: untagged is :latest"
            assert re.fullmatch(r"v?\d+(\.\d+){1,2}", tag), f"{target}: {name_of(obj)} runs {image}: not a version"
            if name.startswith("goshop-"):
                assert tag == VERSION, f"{target}: {name_of(obj)}: goshop's images carry setup.py's version"


# --- production ------------------------------------------------------------------------


def test_production_lists_the_base_files_but_the_dev_secret():
    base = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    resources = yaml.safe_load((TARGETS["production"] / "kustomization.yaml").read_text())["resources"]
    assert [r.removeprefix("../../") for r in resources] == [f for f in base if f != "goshop-secrets.yaml"]


def test_production_renders_no_secret():
    # Production refuses every value the repository holds: none may ship with it.
    assert not of_kind(rendered("production"), "Secret")


def test_every_production_process_runs_in_production_mode():
    objects = rendered("production")
    for configmap in of_kind(objects, "ConfigMap"):
        data = configmap["data"]
        assert data.get("GOSHOP_ENV") == "production", configmap["metadata"]["name"]
        assert "GOSHOP_DEV_DIR" not in data, configmap["metadata"]["name"]
    for workload in [*of_kind(objects, "Deployment"), *of_kind(objects, "Job")]:
        assert _env_of(objects, workload)["GOSHOP_ENV"] == "production", name_of(workload)


def test_production_users_reads_an_owner_only_copy_of_the_key_secret():
    objects = rendered("production")
    users = by_name(objects, "Deployment")["users"]
    spec = pod_spec(users)
    key_file = _env_of(objects, users)["GOSHOP_JWT_PRIVATE_KEY_FILE"]
    (init,) = spec["initContainers"]
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    key_dir = str(Path(key_file).parent)
    # The server reads a memory emptyDir, never the Secret volume (group-readable under fsGroup).
    assert volumes[mounts[key_dir]] == {"name": mounts[key_dir], "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
    assert init["command"][:3] == ["install", "-m", "600"]
    assert init["command"][-1] == key_file
    init_mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    source_dir = str(Path(init["command"][-2]).parent)
    assert "secret" in volumes[init_mounts[source_dir]]
    assert init_mounts[key_dir] == mounts[key_dir]
