"""Offline checks of docker/compose.*.yml: the compose-spec schema, Debian's
docker-compose 1.29 (when installed), and what neither checks: references
between services, healthchecks and start order, the ports of the contract, the
scrape targets of monitoring/prometheus/prometheus.yml, and mounted paths.

No Docker engine: `docker-compose config -q` only reads the files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from goshop_common.db import roles
from goshop_common.messaging.kafka import PARTITIONS
from goshop_domain.events import DEAD_LETTER_TOPICS, TOPICS

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
INFRA = DOCKER / "compose.infra.yml"
SERVICES = DOCKER / "compose.services.yml"
LOGGING = DOCKER / "compose.logging.yml"
FILES = (INFRA, SERVICES, LOGGING)
PROMETHEUS_YML = ROOT / "monitoring" / "prometheus" / "prometheus.yml"

# service -> (container port, Dockerfile target, image): the shared contract.
APPS = {
    "gateway": (8080, "gateway-app", "goshop-gateway:dev"),
    "users": (8081, "users-app", "goshop-users:dev"),
    "orders": (8082, "orders-app", "goshop-orders:dev"),
    "payments": (8083, "payments-app", "goshop-payments:dev"),
    "outboxer": (8084, "outboxer-app", "goshop-outboxer:dev"),
    "ops": (8085, "opsassistant-app", "goshop-opsassistant:dev"),
    "orders-consumer": (8086, "orders-app", "goshop-orders:dev"),
    "payments-consumer": (8087, "payments-app", "goshop-payments:dev"),
    "maintenance": (8088, "outboxer-app", "goshop-outboxer:dev"),
}
# HTTP service -> its internal port (/metrics): exposed on the compose network for
# Prometheus, never published. The workers' metrics are on their one port.
METRICS_PORTS = {"gateway": 9080, "users": 9081, "orders": 9082, "payments": 9083, "ops": 9085}
MIGRATIONS = {
    "users-migrate": ("users-app", "goshop_users.migrate", {"users", "maintenance"}),
    "orders-migrate": (
        "orders-app",
        "goshop_orders.migrate",
        {"orders", "outboxer", "orders-consumer", "ops", "maintenance"},
    ),
    "payments-migrate": (
        "payments-app",
        "goshop_payments.migrate",
        {"payments", "outboxer", "payments-consumer", "ops", "maintenance"},
    ),
}
PROFILED = {
    "ollama": {"ollama"},
    "logging": {"elasticsearch", "kibana", "fluent-bit"},
    "monitoring": {"prometheus", "grafana"},
}
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (containers listen on every interface of their own)
# Keys docker-compose 1.29 rejects (newer Compose v2 features).
TOP_LEVEL_TOO_NEW = {"name", "include"}
SERVICE_TOO_NEW = {"develop"}


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return data


@pytest.fixture(scope="module")
def docs() -> dict[Path, dict]:
    return {path: _load(path) for path in FILES}


@pytest.fixture(scope="module")
def services(docs) -> dict[str, dict]:
    """infra + services, merged the way `-f infra -f services` merges them."""
    merged: dict[str, dict] = {}
    for path in (INFRA, SERVICES):
        for name, spec in docs[path]["services"].items():
            merged.setdefault(name, {}).update(spec)
    return merged


def _bin(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} not found: install the dev extras"
    return found


# --- validators -----------------------------------------------------------------


def test_compose_files_parse_as_yaml_mappings_with_services(docs):
    for path, data in docs.items():
        assert isinstance(data.get("services"), dict), f"{path.name} has no services mapping"
        assert data["services"], f"{path.name} has no services"


def test_compose_files_match_the_compose_spec_schema():
    result = subprocess.run(
        [_bin("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", *map(str, FILES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "files", [(INFRA,), (INFRA, SERVICES), (INFRA, SERVICES, LOGGING)], ids=["infra", "infra+services", "+logging"]
)
def test_docker_compose_129_accepts_the_files(files):
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose not installed: `apt-get install -y docker-compose` (Debian's 1.29) runs this")
    args = [compose]
    for path in files:
        args += ["-f", str(path)]
    # Every profile, so the profiled services are checked too.
    for profile in PROFILED:
        args += ["--profile", profile]
    result = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_keys_that_docker_compose_129_rejects(docs):
    # Also checked without docker-compose installed.
    for path, data in docs.items():
        assert "version" in data, f"{path.name}: docker-compose 1.29 reads a file without `version` as v1"
        assert not TOP_LEVEL_TOO_NEW & set(data), f"{path.name}: {TOP_LEVEL_TOO_NEW & set(data)}"
        for name, spec in data["services"].items():
            assert not SERVICE_TOO_NEW & set(spec), f"{path.name}: {name} uses {SERVICE_TOO_NEW & set(spec)}"
            assert "start_interval" not in spec.get("healthcheck", {}), f"{path.name}: {name} healthcheck"
            depends_on = spec.get("depends_on", {})
            if isinstance(depends_on, dict):
                for target, condition in depends_on.items():
                    extra = set(condition) - {"condition"}
                    assert not extra, f"{path.name}: {name} depends_on {target} uses {extra}"


# --- references -----------------------------------------------------------------


def _depends_on(spec: dict) -> dict[str, str]:
    value = spec.get("depends_on", {})
    if isinstance(value, list):
        return dict.fromkeys(value, "service_started")
    return {target: (cond or {}).get("condition", "service_started") for target, cond in value.items()}


def test_every_depends_on_target_is_a_service(services):
    for name, spec in services.items():
        for target in _depends_on(spec):
            assert target in services, f"{name} depends on unknown service {target}"
            assert not set(services[target].get("profiles", [])) - set(spec.get("profiles", [])), (
                f"{name} depends on {target}, which only runs under a profile {name} is not in"
            )


def test_logging_override_covers_exactly_the_goshop_services(docs):
    goshop = set(docs[SERVICES]["services"])
    assert set(docs[LOGGING]["services"]) == goshop
    for name, spec in docs[LOGGING]["services"].items():
        logging = spec["logging"]
        assert logging["driver"] == "fluentd", name
        assert logging["options"]["fluentd-address"].endswith(":24224"), name


def test_fluent_bit_publishes_the_port_the_log_driver_targets(services):
    assert any(str(p).endswith("24224:24224") for p in services["fluent-bit"]["ports"])


def test_bind_mounted_paths_exist(docs):
    for path, data in docs.items():
        for name, spec in data["services"].items():
            for volume in spec.get("volumes", []):
                source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
                if source.startswith((".", "/")):
                    assert (path.parent / source).resolve().exists(), f"{path.name}: {name} mounts missing {source}"


# --- the app services -------------------------------------------------------------


def _published(spec: dict) -> dict[int, int]:
    """container port -> host port."""
    result = {}
    for port in spec.get("ports", []):
        parts = str(port).split("/")[0].split(":")
        result[int(parts[-1])] = int(parts[-2])
    return result


def test_every_app_service_exists(services):
    missing = set(APPS) - set(services)
    assert not missing, f"missing app services {sorted(missing)}"


@pytest.mark.parametrize("name", APPS)
def test_app_service_builds_its_target_into_its_image(services, name):
    from tests.devloop.test_docker import DOCKERFILE, parse_dockerfile

    _, target, image = APPS[name]
    spec = services[name]
    assert spec["image"] == image
    build = spec["build"]
    assert (SERVICES.parent / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE
    assert build["target"] == target
    assert target in parse_dockerfile(DOCKERFILE.read_text())


@pytest.mark.parametrize("name", APPS)
def test_app_service_publishes_and_healthchecks_its_contract_port(services, name):
    port = APPS[name][0]
    spec = services[name]
    assert _published(spec) == {port: port}, f"{name} publishes {spec.get('ports')}"
    test = spec["healthcheck"]["test"]
    assert test[0] == "CMD", f"{name}: exec-form healthcheck (no shell in the command)"
    urls = re.findall(r"https?://[^'\"\s]+", " ".join(test))
    assert [urlsplit(u).port for u in urls] == [port], f"{name}: {test}"
    assert urls[0].endswith("/ready"), f"{name}: {test}"
    command = spec["command"]
    if "--port" in command:
        assert command[command.index("--port") + 1] == str(port)
        assert command[command.index("--host") + 1] == ALL_INTERFACES


@pytest.mark.parametrize("name", APPS)
def test_app_service_starts_after_what_it_needs(services, name):
    depends_on = _depends_on(services[name])
    assert depends_on, f"{name} has no depends_on"
    for target, condition in depends_on.items():
        wanted = "service_completed_successfully" if "healthcheck" not in services[target] else "service_healthy"
        assert condition == wanted, f"{name} waits for {target} with {condition}, not {wanted}"


@pytest.mark.parametrize("name", MIGRATIONS)
def test_migrations_are_one_shots_their_services_wait_for(services, name):
    target, module, dependants = MIGRATIONS[name]
    spec = services[name]
    assert spec["build"]["target"] == target
    assert spec["command"] == ["python", "-m", module, "up"]
    assert spec.get("restart", "no") == "no"
    # After the database roles: the migrations grant to them.
    assert _depends_on(spec) == {"db-roles": "service_completed_successfully"}
    for dependant in dependants:
        assert _depends_on(services[dependant]).get(name) == "service_completed_successfully", dependant


def test_gateway_waits_for_every_upstream_it_routes_to(services):
    env = services["gateway"]["environment"]
    not_upstreams = {"GOSHOP_DATABASE_URL", "GOSHOP_JWKS_URL", "GOSHOP_PUBLIC_URL"}
    upstreams = {urlsplit(env[key]).hostname for key in env if key.endswith("_URL") and key not in not_upstreams}
    assert upstreams == {"users", "orders", "payments", "ops"}
    for upstream in upstreams:
        assert _depends_on(services["gateway"]).get(upstream) == "service_healthy"
        host, port = urlsplit(env[f"GOSHOP_{upstream.upper()}_URL"]).netloc.split(":")
        assert int(port) == APPS[host][0]


def test_the_database_roles_are_made_first_by_the_administrator(services):
    spec = services["db-roles"]
    assert spec["command"] == ["python", "-m", "goshop_common.db.roles"]
    assert spec.get("restart", "no") == "no"
    assert _depends_on(spec) == {"postgres": "service_healthy"}
    assert urlsplit(spec["environment"]["GOSHOP_DATABASE_URL"]).username == "goshop"


@pytest.mark.parametrize("name", [*APPS, *MIGRATIONS])
def test_each_service_connects_as_its_own_database_role(services, name):
    env = services[name]["environment"]
    process = "migrate" if name in MIGRATIONS else name
    if process not in roles.PROCESS_ROLES:
        assert "GOSHOP_DATABASE_URL" not in env, f"{name} uses no database"
        return
    assert urlsplit(env["GOSHOP_DATABASE_URL"]).username == roles.PROCESS_ROLES[process]


@pytest.mark.parametrize("name", [*APPS, *MIGRATIONS])
def test_app_service_environment_points_at_compose_hosts(services, name):
    env = services[name]["environment"]
    assert env["GOSHOP_ENV"] == "development", "the ini says production; dev defaults need the env"
    if "GOSHOP_DATABASE_URL" in env:
        database = urlsplit(env["GOSHOP_DATABASE_URL"])
        assert (database.hostname, database.port) == ("postgres", 5432)
    assert env["GOSHOP_KAFKA_BOOTSTRAP"] == "kafka:9092"
    jwks = urlsplit(env["GOSHOP_JWKS_URL"])
    assert (jwks.hostname, jwks.port) == ("users", 8081)


@pytest.mark.parametrize("name", [*APPS, *MIGRATIONS])
def test_app_service_sends_its_traces_to_the_compose_jaeger(services, name):
    endpoint = urlsplit(services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (endpoint.hostname, endpoint.port) == ("jaeger", 4318)


# --- infrastructure -------------------------------------------------------------


def test_jaeger_runs_with_the_infra_pinned_by_tag_and_publishes_its_ui(services):
    jaeger = services["jaeger"]
    assert not jaeger.get("profiles"), "the services export to it: it must run whenever they do"
    assert re.fullmatch(r"jaegertracing/jaeger:\d+\.\d+\.\d+", jaeger["image"])
    assert _published(jaeger) == {16686: 16686, 4318: 4318}


def test_postgres_matches_the_seed(services):
    spec = services["postgres"]
    assert spec["image"] == "postgres:12"
    assert {spec["environment"][k] for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")} == {"goshop"}
    assert _published(spec) == {5432: 5433}
    assert any(v.startswith("pgdata:") for v in spec["volumes"])
    assert "pg_isready" in spec["healthcheck"]["test"]


def test_kafka_advertises_the_listener_services_use(services):
    env = services["kafka"]["environment"]
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    # Containers bootstrap from kafka:9092 and are then sent to goshop-kafka:9092, the
    # alias that kind's pods resolve too (docker/compose.kind.yml).
    assert "goshop-kafka:9092" in advertised.values()
    assert "goshop-kafka" in services["kafka"]["networks"]["default"]["aliases"]
    for address in advertised.values():
        port = int(address.rsplit(":", 1)[1])
        assert f"0.0.0.0:{port}" in env["KAFKA_LISTENERS"], f"{address} is advertised but not listened on"
        if not address.startswith("goshop-kafka:"):
            assert port in _published(services["kafka"]), f"host listener {address} is not published"
    assert "healthcheck" in services["kafka"]


def test_kafka_init_creates_the_topics_and_dead_letter_topics_the_code_uses(services):
    spec = services["kafka-init"]
    script = " ".join(spec["command"]) if isinstance(spec["command"], list) else spec["command"]
    # Words, not substrings: "orders.events" is in "orders.events.dlq".
    words = set(script.replace(";", " ").split())
    assert set(TOPICS + DEAD_LETTER_TOPICS) <= words
    assert f"--partitions {PARTITIONS}" in script
    assert "--if-not-exists" in script
    assert _depends_on(spec) == {"kafka": "service_healthy"}


def test_optional_stacks_run_only_under_their_profiles(services):
    for profile, names in PROFILED.items():
        for name in names:
            assert services[name].get("profiles") == [profile], name
    unprofiled = {n for n, s in services.items() if not s.get("profiles")}
    assert {"postgres", "kafka", "kafka-init"} <= unprofiled


def test_every_prometheus_scrape_target_is_a_compose_service_on_its_port(services):
    config = _load(PROMETHEUS_YML)
    targets = [t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    for target in targets:
        host, port = target.rsplit(":", 1)
        if host == "localhost":
            continue
        assert host in services, f"prometheus scrapes {target}, no such compose service"
        wanted = METRICS_PORTS.get(host, APPS[host][0])
        assert int(port) == wanted, f"prometheus scrapes {target}, the service serves /metrics on {wanted}"


@pytest.mark.parametrize("name", METRICS_PORTS)
def test_an_http_services_metrics_port_is_exposed_to_prometheus_not_published(services, name):
    spec = services[name]
    metrics = METRICS_PORTS[name]
    assert [int(p) for p in spec.get("expose", [])] == [metrics], f"{name} exposes {spec.get('expose')}"
    assert metrics not in _published(spec), f"{name} publishes its metrics port"
    # What the container serves it on: the ini it runs (no --metrics-port override).
    ini = next(arg for arg in spec["command"] if arg.endswith(".ini"))
    assert "--metrics-port" not in spec["command"]
    configured = re.search(r"^goshop\.metrics_port = (\d+)$", (ROOT / ini).read_text(), re.M)
    assert configured, f"{ini} has no goshop.metrics_port"
    assert int(configured.group(1)) == metrics, f"{ini} serves metrics on {configured.group(1)}"


def test_monitoring_mounts_follow_monitoring_readme(services):
    def mounts(name):
        return {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}

    assert mounts("prometheus")["/etc/prometheus"] == "../monitoring/prometheus"
    assert mounts("grafana")["/etc/grafana/provisioning"] == "../monitoring/grafana/provisioning"
    assert mounts("grafana")["/var/lib/grafana/dashboards/goshop"] == "../monitoring/grafana/dashboards"
    assert mounts("fluent-bit")["/fluent-bit/etc"] == "../monitoring/fluent-bit"


def test_the_kind_override_puts_the_infra_on_kinds_network_under_the_hybrid_names():
    kind = yaml.safe_load((ROOT / "docker" / "compose.kind.yml").read_text())
    assert kind["networks"]["kind"] == {"external": True, "name": "kind"}
    assert kind["services"]["postgres"]["networks"]["kind"]["aliases"] == ["goshop-postgres"]
    assert kind["services"]["kafka"]["networks"]["kind"]["aliases"] == ["goshop-kafka"]
    if not shutil.which("kubectl"):
        pytest.skip("kubectl not installed: cannot render k8s/overlays/hybrid")
    rendered = subprocess.run(
        [
            shutil.which("kubectl"),
            "kustomize",
            "--load-restrictor=LoadRestrictionsNone",
            str(ROOT / "k8s" / "overlays" / "hybrid"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # What the hybrid pods are told to dial is what the override names.
    assert "goshop-postgres:5432" in rendered
    assert "goshop-kafka:9092" in rendered
