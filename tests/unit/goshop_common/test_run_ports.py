"""``make run``'s ports: every process's public and internal port, from one base."""

import configparser

import pytest

from goshop_devtools.run import METRICS_PORT_SHIFT, PROCESSES, ROOT


def _flag(command: list[str], name: str) -> int | None:
    return int(command[command.index(name) + 1]) if name in command else None


def _ports(base: int) -> dict[str, tuple[int | None, int | None]]:
    """process -> (--port, --metrics-port) of its command."""
    commands = {p.name: p.command(base) for p in PROCESSES}
    return {name: (_flag(c, "--port"), _flag(c, "--metrics-port")) for name, c in commands.items()}


def test_every_http_service_gets_a_metrics_port_of_its_own_and_workers_none():
    ports = _ports(8080)
    served = {p.name for p in PROCESSES if p.serves_an_app}
    assert served == {"gateway", "users", "orders", "payments", "ops"}
    for name, (public, metrics) in ports.items():
        if name in served:
            assert metrics == public + METRICS_PORT_SHIFT, name
        else:
            assert metrics is None, f"{name} is a worker: its metrics are on its health port"
    every = [port for pair in ports.values() for port in pair if port is not None]
    assert len(every) == len(set(every)), f"two processes share a port: {sorted(every)}"


@pytest.mark.parametrize("process", [p for p in PROCESSES if p.serves_an_app], ids=lambda p: p.name)
def test_the_default_base_uses_the_inis_metrics_port(process):
    # `make run` with the default base serves where the ini (and the README) say.
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / f"goshop_{process.name}" / "development.ini")
    _public, metrics = _ports(8080)[process.name]
    assert int(ini["app:main"]["goshop.metrics_port"]) == metrics


def test_a_second_shop_on_another_base_shares_no_port_with_the_first():
    first = {port for pair in _ports(8080).values() for port in pair if port is not None}
    second = {port for pair in _ports(8180).values() for port in pair if port is not None}
    assert not first & second


def test_the_startup_message_points_at_each_processes_metrics():
    by_name = {p.name: p for p in PROCESSES}
    assert by_name["users"].metrics_url(8080) == "http://127.0.0.1:9081/metrics"
    assert by_name["outboxer"].metrics_url(8080) == "http://127.0.0.1:8084/metrics"
