"""Offline checks of the files under monitoring/: each one parses, and every
metric it queries is one the services export (goshop_common.observability.metrics.EXPORTED).

No network, no Docker, no Prometheus/Grafana/Fluent Bit binaries: the files are
read as data, PromQL is scanned for metric names with a small tokenizer, and
Fluent Bit's classic format with a small parser.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client import Histogram

from goshop_common.observability import metrics
from goshop_common.observability.logs import JsonFormatter
from goshop_common.observability.metrics import EXPORTED

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
PROMETHEUS_YML = MONITORING / "prometheus" / "prometheus.yml"
ALERTS_YML = MONITORING / "prometheus" / "alerts.yml"
DASHBOARD_JSON = MONITORING / "grafana" / "dashboards" / "goshop.json"
DATASOURCES_YML = MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS_YML = MONITORING / "grafana" / "provisioning" / "dashboards" / "goshop.yml"
FLUENT_BIT_CONF = MONITORING / "fluent-bit" / "fluent-bit.conf"
PARSERS_CONF = MONITORING / "fluent-bit" / "parsers.conf"
ALERTS_TEST_YML = MONITORING / "prometheus" / "alerts_test.yml"
README = MONITORING / "README.md"

# Histograms are exposed as <name>_bucket, <name>_sum and <name>_count.
HISTOGRAMS = ("goshop_http_request_duration_seconds",)
# Series Prometheus makes itself for every target.
BUILTIN_SERIES = {"up"}

# Every goshop process, as compose service name:port of its /metrics: the HTTP
# services' internal metrics ports, the workers' health ports.
SCRAPE_TARGETS = {
    "gateway:9080",
    "users:9081",
    "orders:9082",
    "payments:9083",
    "outboxer:8084",
    "ops:9085",
    "orders-consumer:8086",
    "payments-consumer:8087",
    "maintenance:8088",
}
# The ports the internet reaches: nothing is scraped there.
PUBLIC_PORTS = {"gateway": 8080, "users": 8081, "orders": 8082, "payments": 8083, "ops": 8085}

REQUIRED_ALERTS = {
    "RetentionStalled",
    "OutboxBacklogGrowing",
    "ConsumerLagHigh",
    "HighHttp5xxRate",
    "OutboxPublishFailures",
    "ServiceDown",
    "EventsParked",
    "OrdersTimingOut",
}

CORRELATION_IDS = ("request_id", "order_id", "event_id")


def _yaml(path: Path):
    return yaml.safe_load(path.read_text())


def _allowed_series() -> set[str]:
    allowed = set(EXPORTED) | BUILTIN_SERIES
    for name in HISTOGRAMS:
        allowed |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return allowed


# --- PromQL -------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_TOKEN = re.compile(r"(?P<number>\.?\d[\w.]*)|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)")
_NOT_METRICS = {
    # binary operators and modifiers
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "atan2", "start", "end", "inf", "nan",
    # aggregations, which may be followed by `by (...)` instead of `(`
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}  # fmt: skip
_GOSHOP_SELECTOR = re.compile(r"\b(goshop_[A-Za-z0-9_:]*)(?=[\s{\[)]|$)")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not
    functions, keywords, label names, strings, numbers or durations."""
    text = _STRING.sub('""', expr)
    for open_, close in ("()", "{}", "[]"):
        assert text.count(open_) == text.count(close), f"unbalanced {open_}{close} in {expr!r}"
    text = _MATCHERS.sub("{}", text)
    text = _RANGE.sub("[]", text)
    text = _GROUPING.sub(r"\1", text)
    names = set()
    for token in _TOKEN.finditer(text):
        name = token.group("ident")
        if name is None or name.lower() in _NOT_METRICS:
            continue
        if text[token.end() :].lstrip().startswith("("):
            continue  # a function call
        names.add(name)
    # The explicit form of the rule: every goshop_* selector (an identifier
    # followed by `{`, `[`, `)` or whitespace) is a metric name.
    names |= set(_GOSHOP_SELECTOR.findall(_STRING.sub('""', expr)))
    return names


def unknown_metrics(exprs: dict[str, str]) -> dict[str, set[str]]:
    allowed = _allowed_series()
    unknown = {}
    for where, expr in exprs.items():
        bad = promql_metric_names(expr) - allowed
        if bad:
            unknown[where] = bad
    return unknown


def test_histogram_suffixes_are_allowed_only_for_exported_histograms():
    histograms = {m.describe()[0].name for m in vars(metrics).values() if isinstance(m, Histogram)}
    assert set(HISTOGRAMS) == histograms
    assert set(HISTOGRAMS) <= set(EXPORTED)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (service, status) (rate(goshop_http_requests_total{service=~"$service"}[$__rate_interval]))',
            {"goshop_http_requests_total"},
        ),
        (
            "histogram_quantile(0.95, sum by (le) (rate(goshop_x_seconds_bucket[5m])))",
            {"goshop_x_seconds_bucket"},
        ),
        ("count(up == 0) or vector(0)", {"up"}),
        ("max(foo offset 5m) > bool 1e3", {"foo"}),
        ("sum(rate(a_total[5m])) by (job) / on (job) group_left (kind) b_info", {"a_total", "b_info"}),
        ('goshop_typo{status=~"5.."} > 0', {"goshop_typo"}),
    ],
)
def test_promql_scanner_finds_exactly_the_selected_metrics(expr, names):
    assert promql_metric_names(expr) == names


# --- Prometheus ---------------------------------------------------------------


def test_prometheus_config_scrapes_every_service_every_15s():
    config = _yaml(PROMETHEUS_YML)
    assert config["global"]["scrape_interval"] == "15s"
    jobs = config["scrape_configs"]
    names = [job["job_name"] for job in jobs]
    assert len(names) == len(set(names)), f"duplicate job names: {names}"
    targets = set()
    for job in jobs:
        job_targets = [t for static in job.get("static_configs", []) for t in static.get("targets", [])]
        assert job_targets, f"job {job['job_name']} has no targets"
        for target in job_targets:
            assert re.fullmatch(r"[a-z0-9.-]+:\d+", target), f"{job['job_name']}: bad target {target!r}"
        targets |= set(job_targets)
    assert targets >= SCRAPE_TARGETS, f"not scraped: {sorted(SCRAPE_TARGETS - targets)}"


def test_prometheus_scrapes_no_public_port():
    targets = {
        target
        for job in _yaml(PROMETHEUS_YML)["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    public = {f"{host}:{port}" for host, port in PUBLIC_PORTS.items()}
    assert not targets & public, f"scraped on a public port: {sorted(targets & public)}"


def test_every_http_services_scrape_target_is_its_inis_metrics_port():
    for host in PUBLIC_PORTS:
        for kind in ("development", "production"):
            ini = (ROOT / f"goshop_{host}" / f"{kind}.ini").read_text()
            port = re.search(r"^goshop\.metrics_port = (\d+)$", ini, re.M)
            assert port, f"goshop_{host}/{kind}.ini has no goshop.metrics_port"
            assert f"{host}:{port.group(1)}" in SCRAPE_TARGETS, f"{host}: the ini serves metrics on {port.group(1)}"


def test_the_operations_guides_loopback_rewrite_scrapes_every_process_of_make_run():
    # docs/operations.md, "Watching `make run` in Grafana": a sed turns the compose names into
    # 127.0.0.1, which must then be where `make run` serves each /metrics.
    from goshop_devtools.run import PROCESSES

    guide = (ROOT / "docs" / "operations.md").read_text()
    sed = re.search(r"sed -E 's/([^/]+)/([^/]+)/' monitoring/prometheus/prometheus.yml", guide)
    assert sed, "docs/operations.md has no sed rewrite of prometheus.yml"
    rewritten = yaml.safe_load(re.sub(sed[1], sed[2].replace("\\1", r"\g<1>"), PROMETHEUS_YML.read_text()))
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in rewritten["scrape_configs"]}
    for process in PROCESSES:
        url = process.metrics_url(8080)
        assert targets[process.name] == [url.removeprefix("http://").removesuffix("/metrics")], process.name


def test_prometheus_does_not_clobber_the_services_own_service_label():
    # A target label `service` would rename every series' own `service` label
    # to exported_service, and every `by (service)` query would break.
    for job in _yaml(PROMETHEUS_YML)["scrape_configs"]:
        for static in job.get("static_configs", []):
            assert "service" not in static.get("labels", {}), job["job_name"]
        assert not job.get("honor_labels"), job["job_name"]


def test_prometheus_rule_files_exist_next_to_the_config():
    rule_files = _yaml(PROMETHEUS_YML)["rule_files"]
    assert "alerts.yml" in rule_files
    for name in rule_files:
        assert (PROMETHEUS_YML.parent / name).is_file(), name


def _alert_rules() -> list[dict]:
    return [rule for group in _yaml(ALERTS_YML)["groups"] for rule in group["rules"] if "alert" in rule]


def test_alerts_file_is_well_formed_prometheus_rule_groups():
    groups = _yaml(ALERTS_YML)["groups"]
    assert groups
    group_names = [group["name"] for group in groups]
    assert len(group_names) == len(set(group_names)), group_names
    for group in groups:
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            name = rule.get("alert")
            assert name, f"rule without alert name in {group['name']}"
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, name
            assert isinstance(rule["expr"], str), name
            assert rule["expr"].strip(), name
            assert re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", str(rule["for"])), f"{name}: for={rule['for']!r}"
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
            assert rule["annotations"]["summary"].strip(), name
            assert rule["annotations"]["description"].strip(), name


def test_every_required_alert_is_defined_once():
    names = [rule["alert"] for rule in _alert_rules()]
    assert len(names) == len(set(names)), names
    assert set(names) >= REQUIRED_ALERTS, f"missing alerts: {sorted(REQUIRED_ALERTS - set(names))}"


def test_alert_expressions_use_only_exported_metrics():
    exprs = {rule["alert"]: rule["expr"] for rule in _alert_rules()}
    assert unknown_metrics(exprs) == {}


@pytest.mark.parametrize(
    ("alert", "needles"),
    [
        ("RetentionStalled", ["time() - max by (table) (goshop_retention_last_success_timestamp_seconds) > 3600"]),
        (
            "OutboxBacklogGrowing",
            ["goshop_outbox_backlog", "deriv(goshop_outbox_backlog[", "goshop_outbox_oldest_pending_age_seconds"],
        ),
        ("ConsumerLagHigh", ["max by (consumer) (goshop_consumer_lag) > 100"]),
        ("HighHttp5xxRate", ['goshop_http_requests_total{status=~"5.."}', "sum by (service)", "> 0.05"]),
        ("OutboxPublishFailures", ["rate(goshop_outbox_publish_failures_total[", "> 0"]),
        ("ServiceDown", ["up == 0"]),
        ("EventsParked", ["increase(goshop_events_parked_total[15m])", "> 0"]),
    ],
)
def test_each_alert_watches_its_signal(alert, needles):
    (rule,) = [rule for rule in _alert_rules() if rule["alert"] == alert]
    expr = " ".join(rule["expr"].split())
    for needle in needles:
        assert needle in expr, f"{alert}: {needle!r} not in {expr!r}"


def test_alert_annotations_only_name_labels_the_expression_keeps():
    # `{{ $labels.table }}` in a rule that aggregates `by (service)` renders empty.
    for rule in _alert_rules():
        kept = {
            label.strip() for group in re.findall(r"\bby\s*\(([^)]*)\)", rule["expr"]) for label in group.split(",")
        }
        if not kept:
            continue  # no aggregation: the series keep all their labels
        text = " ".join(rule["annotations"].values())
        used = set(re.findall(r"\$labels\.(\w+)", text))
        assert used <= kept, f"{rule['alert']}: annotations use {sorted(used - kept)}, expr keeps {sorted(kept)}"


# --- Grafana ------------------------------------------------------------------


def _dashboard() -> dict:
    return json.loads(DASHBOARD_JSON.read_text())


def _query_panels(dashboard: dict) -> list[dict]:
    panels = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            panels.extend(panel.get("panels", []))
        else:
            panels.append(panel)
    return panels


def _dashboard_exprs(dashboard: dict) -> dict[str, str]:
    exprs = {}
    for panel in _query_panels(dashboard):
        for target in panel.get("targets", []):
            exprs[f"panel {panel['title']!r} {target.get('refId')}"] = target.get("expr", "")
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        label_values = re.fullmatch(r"\s*label_values\(\s*(?:(.+?)\s*,\s*)?\w+\s*\)\s*", query)
        exprs[f"variable {variable['name']!r}"] = (label_values.group(1) or "") if label_values else query
    return exprs


def test_dashboard_has_identity_and_panels():
    dashboard = _dashboard()
    assert dashboard["uid"] == "goshop"
    assert dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_dashboard_panel_has_a_promql_query_and_fits_the_grid():
    for panel in _query_panels(_dashboard()):
        title = panel.get("title")
        assert title, f"panel {panel['id']} has no title"
        assert panel["type"] in {"timeseries", "stat"}, title
        targets = panel.get("targets")
        assert targets, f"{title}: no targets"
        assert all(target.get("expr", "").strip() for target in targets), f"{title}: empty expr"
        ref_ids = [target["refId"] for target in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{title}: duplicate refIds"
        grid = panel["gridPos"]
        assert grid["w"] > 0
        assert grid["h"] > 0
        assert grid["x"] + grid["w"] <= 24, title


def test_dashboard_queries_use_only_exported_metrics():
    assert unknown_metrics(_dashboard_exprs(_dashboard())) == {}


def test_dashboard_shows_every_exported_metric():
    used = set()
    for expr in _dashboard_exprs(_dashboard()).values():
        used |= promql_metric_names(expr)
    shown = {
        name for name in EXPORTED if name in used or any(f"{name}{s}" in used for s in ("_bucket", "_sum", "_count"))
    }
    assert set(EXPORTED) == shown, f"no panel for: {sorted(set(EXPORTED) - shown)}"


def test_dashboard_panels_use_the_provisioned_prometheus_datasource():
    (datasource,) = [ds for ds in _yaml(DATASOURCES_YML)["datasources"] if ds["type"] == "prometheus"]
    dashboard = _dashboard()
    refs = []
    for panel in _query_panels(dashboard):
        refs.append((panel["title"], panel.get("datasource")))
        refs.extend((panel["title"], target.get("datasource", panel.get("datasource"))) for target in panel["targets"])
    refs.extend((v["name"], v.get("datasource")) for v in dashboard["templating"]["list"] if v["type"] == "query")
    for where, ref in refs:
        assert ref == {"type": "prometheus", "uid": datasource["uid"]}, f"{where}: datasource {ref!r}"


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards_dir():
    datasources = _yaml(DATASOURCES_YML)
    assert datasources["apiVersion"] == 1
    (prometheus,) = [ds for ds in datasources["datasources"] if ds["type"] == "prometheus"]
    assert prometheus["url"] == "http://prometheus:9090"
    assert prometheus["uid"]

    providers = _yaml(DASHBOARD_PROVIDERS_YML)
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    assert list(DASHBOARD_JSON.parent.glob("*.json")) == [DASHBOARD_JSON]


# --- promtool -----------------------------------------------------------------
# Debian's `prometheus` package brings promtool; .ci/run installs it. Without it these
# tests skip and say so, except in CI, where a skip would hide that they never ran.


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        why = "promtool not installed: `apt-get install -y prometheus` (Debian) brings it"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; .ci/run installs it, and CI must run these tests")
        pytest.skip(why)
    return path


def _run_promtool(promtool: str, *args: str) -> None:
    result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"


def _alert_rule_tests() -> list[dict]:
    return [case for test in _yaml(ALERTS_TEST_YML)["tests"] for case in test.get("alert_rule_test", [])]


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_stays_quiet():
    assert _yaml(ALERTS_TEST_YML)["rule_files"] == [ALERTS_YML.name]
    cases = _alert_rule_tests()
    rules = {rule["alert"]: rule for rule in _alert_rules()}
    # promtool passes a test of an alert that does not exist (it never fires).
    assert {case["alertname"] for case in cases} <= set(rules), "alerts_test.yml tests an alert alerts.yml lacks"
    for name, rule in rules.items():
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in mine), f"{name}: no test where it fires"
        assert any(not case.get("exp_alerts") for case in mine), f"{name}: no test where it stays quiet"
        for alert in (alert for case in mine for alert in case.get("exp_alerts") or []):
            assert alert["exp_labels"]["severity"] == rule["labels"]["severity"], name
            assert set(alert.get("exp_annotations", {})) == set(rule["annotations"]), f"{name}: annotations untested"


def test_alert_rules_pass_promtool_check_and_their_unit_tests(promtool):
    _run_promtool(promtool, "check", "rules", str(ALERTS_YML))
    _run_promtool(promtool, "test", "rules", str(ALERTS_TEST_YML))


# Requests per minute by service and status for the 5xx panels' test: multiples of 60, so
# every rate is a whole number per second and every expected ratio exact.
TRAFFIC_WITHOUT_5XX = {"gateway": {"200": 240}, "orders": {"201": 240}, "users": {"200": 480}}
TRAFFIC_WITH_5XX = {"gateway": {"200": 240}, "orders": {"201": 180, "500": 60}, "users": {"200": 480}}


def _five_xx_panel_exprs() -> dict[str, str]:
    """The dashboard's expressions over 5xx series, as Prometheus gets them with the
    $service variable at "All" and a 5m rate interval."""
    dashboard = _dashboard()
    (service,) = [v for v in dashboard["templating"]["list"] if v["name"] == "service"]
    exprs = {}
    for where, expr in _dashboard_exprs(dashboard).items():
        if 'status=~"5.."' in expr:
            expr = expr.replace("$__rate_interval", "5m").replace("$service", service["allValue"])
            assert "$" not in expr, f"{where}: a Grafana variable this test does not fill in: {expr}"
            exprs[where] = expr
    return exprs


def _expected_ratios(expr: str, traffic: dict[str, dict[str, int]]) -> list[dict]:
    groupings = {tuple(label.strip() for label in g.split(",")) for g in re.findall(r"\bby\s*\(([^)]*)\)", expr)}
    assert groupings <= {("service",)}, f"extend this test for grouping {groupings}: {expr}"

    def ratio(services):
        failed = sum(n for s in services for status, n in traffic[s].items() if status.startswith("5"))
        return failed / sum(n for s in services for n in traffic[s].values())

    if groupings:
        return [{"labels": f'{{service="{s}"}}', "value": ratio([s])} for s in sorted(traffic)]
    return [{"labels": "{}", "value": ratio(list(traffic))}]


def _request_series(traffic: dict[str, dict[str, int]]) -> list[dict]:
    return [
        {
            "series": f'goshop_http_requests_total{{job="{service}", service="{service}", route="r", method="GET", '
            f'status="{status}"}}',
            "values": f"0+{per_minute}x15",
        }
        for service, statuses in traffic.items()
        for status, per_minute in statuses.items()
    ]


def test_5xx_ratio_panels_show_0_not_no_data_when_nothing_failed(promtool, tmp_path):
    # Without 5xx series, `5xx / all` is empty and Grafana shows "No data", which reads as
    # "not scraped" rather than "nothing failed". The dashboard's own expressions are
    # evaluated, with and without failures.
    exprs = _five_xx_panel_exprs()
    assert {"panel '5xx ratio' A", "panel '5xx ratio by service' A"} <= set(exprs), sorted(exprs)
    tests = [
        {
            "name": f"5xx panels, {case}",
            "interval": "1m",
            "input_series": _request_series(traffic),
            "promql_expr_test": [
                {"expr": expr, "eval_time": "10m", "exp_samples": _expected_ratios(expr, traffic)}
                for expr in exprs.values()
            ],
        }
        for case, traffic in (("no 5xx", TRAFFIC_WITHOUT_5XX), ("orders 25% 5xx", TRAFFIC_WITH_5XX))
    ]
    test_file = tmp_path / "panels_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": tests}))
    _run_promtool(promtool, "test", "rules", str(test_file))


# --- Fluent Bit ---------------------------------------------------------------


def parse_classic(path: Path) -> list[tuple[str, dict[str, str]]]:
    """Fluent Bit's classic format: `[SECTION]` headers, then indented
    `Key Value` lines; keys are case-insensitive, `#` starts a comment."""
    sections: list[tuple[str, dict[str, str]]] = []
    indent = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        where = f"{path.name}:{number}"
        assert "\t" not in raw, f"{where}: tab (classic format wants spaces)"
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[([A-Z_]+)\]", line)
        if header:
            assert raw == line, f"{where}: indented section header"
            sections.append((header.group(1), {}))
            continue
        assert not line.startswith("@"), f"{where}: @commands are not used here"
        assert sections, f"{where}: entry before any section"
        this_indent = len(raw) - len(raw.lstrip())
        assert this_indent > 0, f"{where}: entry not indented"
        indent = this_indent if indent is None else indent
        assert this_indent == indent, f"{where}: indentation {this_indent}, file uses {indent}"
        key, _, value = line.partition(" ")
        assert value.strip(), f"{where}: {key} has no value"
        sections[-1][1][key.lower()] = value.strip()
    return sections


def _sections(path: Path, kind: str) -> list[dict[str, str]]:
    return [entries for name, entries in parse_classic(path) if name == kind]


def _plugin(path: Path, kind: str, name: str) -> list[dict[str, str]]:
    return [entries for entries in _sections(path, kind) if entries.get("name") == name]


def _json_parsers() -> dict[str, dict[str, str]]:
    return {p["name"]: p for p in _sections(PARSERS_CONF, "PARSER") if p.get("format") == "json"}


def test_fluent_bit_config_parses_into_known_sections():
    names = {name for name, _ in parse_classic(FLUENT_BIT_CONF)}
    assert names <= {"SERVICE", "INPUT", "FILTER", "OUTPUT"}, names
    assert {name for name, _ in parse_classic(PARSERS_CONF)} == {"PARSER"}
    for kind in ("INPUT", "FILTER", "OUTPUT"):
        for entries in _sections(FLUENT_BIT_CONF, kind):
            assert "name" in entries, f"{kind} without Name"
            if kind != "INPUT":
                assert "match" in entries or "match_regex" in entries, f"{kind} {entries['name']} without Match"


def test_fluent_bit_reads_kubernetes_container_logs_and_compose_forwarding():
    (tail,) = _plugin(FLUENT_BIT_CONF, "INPUT", "tail")
    assert tail["path"] == "/var/log/containers/*.log"
    assert tail["tag"].startswith("kube.")
    (kubernetes,) = _plugin(FLUENT_BIT_CONF, "FILTER", "kubernetes")
    assert fnmatch.fnmatchcase(tail["tag"], kubernetes["match"])
    # The filter finds pod and namespace by stripping this prefix from the tag.
    (kube_tag,) = [tag for tag in _sample_tags() if fnmatch.fnmatchcase(tag, tail["tag"])]
    assert kube_tag.startswith(kubernetes["kube_tag_prefix"])
    (forward,) = _plugin(FLUENT_BIT_CONF, "INPUT", "forward")
    assert forward["port"] == "24224"


def test_fluent_bit_parses_log_lines_with_a_json_parser_from_its_parsers_file():
    (service,) = _sections(FLUENT_BIT_CONF, "SERVICE")
    assert (FLUENT_BIT_CONF.parent / service["parsers_file"]).resolve() == PARSERS_CONF.resolve()
    (parser_filter,) = _plugin(FLUENT_BIT_CONF, "FILTER", "parser")
    assert parser_filter["key_name"] == "log"
    assert parser_filter["parser"] in _json_parsers(), "the parser filter must use a Format json parser"
    # Without Reserve_Data the parsed fields replace the record, dropping the
    # kubernetes metadata and the compose container_name.
    assert parser_filter["reserve_data"].lower() == "on"


def _sample_tags() -> list[str]:
    tags = []
    for entries in _sections(FLUENT_BIT_CONF, "INPUT"):
        if entries["name"] == "tail":
            # tail expands `*` to the file's path with `/` turned into `.`.
            tags.append(entries["tag"].replace("*", "var.log.containers.orders-7d9_goshop_orders-0a1b.log"))
        elif entries["name"] == "forward":
            # Docker's fluentd driver tags with the container id by default.
            tags.append(entries.get("tag_prefix", "") + "3f2a1b4c5d6e")
        else:
            tags.append(entries["tag"])
    return tags


def test_every_input_reaches_the_json_parser_and_elasticsearch():
    (parser_filter,) = _plugin(FLUENT_BIT_CONF, "FILTER", "parser")
    (es,) = _plugin(FLUENT_BIT_CONF, "OUTPUT", "es")
    tags = _sample_tags()
    assert len(tags) == 2
    for tag in tags:
        assert fnmatch.fnmatchcase(tag, parser_filter["match"]), f"{tag} is not parsed"
        assert fnmatch.fnmatchcase(tag, es["match"]), f"{tag} is not shipped"


def test_fluent_bit_ships_to_the_goshop_elasticsearch_indices():
    (es,) = _plugin(FLUENT_BIT_CONF, "OUTPUT", "es")
    assert es["host"] == "elasticsearch"
    assert es["port"] == "9200"
    assert es["logstash_format"].lower() == "on"
    assert es["logstash_prefix"] == "goshop"


def test_fluent_bit_keeps_the_correlation_ids():
    for entries in _sections(FLUENT_BIT_CONF, "FILTER"):
        for key, value in entries.items():
            words = set(re.split(r"[\s,]+", value))
            if key.startswith(("remove", "blacklist", "exclude")):
                assert not words & set(CORRELATION_IDS), f"{entries['name']} drops {key} {value}"
            if key.startswith(("allowlist", "whitelist")):
                assert set(CORRELATION_IDS) <= words, f"{entries['name']} keeps only {value}"


def _log_line(**extra) -> str:
    record = logging.LogRecord("goshop.request", logging.INFO, __file__, 1, "request", None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return JsonFormatter().format(record)


def test_our_log_lines_are_what_the_json_parser_expects():
    (parser,) = _json_parsers().values()
    line = _log_line(
        method="POST",
        path="/v1/orders",
        status=201,
        duration_ms=12.5,
        request_id="req-1",
        user_id="u-1",
        order_id="o-1",
        event_id="e-1",
    )
    assert "\n" not in line
    entry = json.loads(line)
    for key in CORRELATION_IDS:
        assert entry[key], key
    assert entry["status"] == 201
    # The parser's Time_Format (%L = fractional seconds) must read our `ts`.
    assert parser["time_key"] in entry
    python_format = parser["time_format"].replace("%L", "%f")
    datetime.strptime(entry[parser["time_key"]], python_format)


def test_a_log_line_with_a_traceback_is_still_one_json_line():
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.LogRecord("goshop", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError" in json.loads(line)["exc"]


# --- README -------------------------------------------------------------------


def test_readme_describes_every_monitoring_file():
    text = README.read_text()
    for path in sorted(MONITORING.rglob("*")):
        if path.is_file() and path != README:
            relative = path.relative_to(MONITORING).as_posix()
            assert relative in text, f"monitoring/README.md does not mention {relative}"
    for alert in REQUIRED_ALERTS:
        assert alert in text, f"monitoring/README.md does not explain {alert}"
