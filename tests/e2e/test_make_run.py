"""``make run``'s program: Postgres, the broker, migrations and every service
come up and run the saga, and Ctrl-C takes all of it down again."""

import signal
import socket
import time

from goshop_common.devinfra.postgres import free_port
from tests.e2e.conftest import Http, spawn, stop, wait_for


def _listening(port):
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_goshop_dev_starts_the_shop_and_ctrl_c_stops_everything(tmp_path, child_env):
    env = {k: v for k, v in child_env.items() if k != "GOSHOP_DATABASE_URL"}
    pg_port = free_port()
    kafka_port = free_port()
    base = free_port()
    while any(_listening(base + offset) for offset in range(8)):
        base = free_port()
    users_port, orders_port, payments_port, outboxer_port = base + 1, base + 2, base + 3, base + 4
    log_path = tmp_path / "dev.log"
    process = spawn(
        [
            "-m",
            "goshop_common.devinfra.run",
            "--data-dir",
            str(tmp_path / "state"),
            "--pg-port",
            str(pg_port),
            "--kafka-port",
            str(kafka_port),
            "--base-port",
            str(base),
        ],
        env,
        log_path,
    )
    try:
        for port in (base, users_port, orders_port, payments_port, outboxer_port):
            wait_for(port, timeout=120, process=process)
        users, orders = Http(users_port), Http(orders_port)
        account = {"email": "dev@example.com", "password": "12345678"}
        status, _, body = users.request("POST", "/v1/users/register", account)
        assert status == 201, body
        status, _, tokens = users.request("POST", "/v1/users/login", account)
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        # Orders verifies the token with users' JWKS, fetched over HTTP.
        status, _, order = orders.request("POST", "/v1/orders", {"amount_cents": 19901}, headers=auth)
        assert status == 201, order
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, _, current = orders.request("GET", f"/v1/orders/{order['id']}/status", headers=auth)
            if current["status"] != "new":
                break
            time.sleep(0.2)
        assert current == {"id": order["id"], "status": "paid", "reason": None}
        _, _, payments = Http(payments_port).request("GET", f"/v1/payments?order_id={order['id']}", headers=auth)
        assert [p["status"] for p in payments["payments"]] == ["confirmed"]
        assert (tmp_path / "state" / "dev-keys" / "jwt-dev-eddsa.pem").exists()
    finally:
        code = stop(process, sig=signal.SIGINT, timeout=60)
    log = log_path.read_text()
    assert code == 0, log
    assert "the shop is up" in log
    for port in (*(base + offset for offset in range(8)), kafka_port, pg_port):
        assert not _listening(port), f"port {port} still open after Ctrl-C"


def test_goshop_dev_refuses_a_taken_database_port_with_advice(tmp_path, child_env):
    env = {k: v for k, v in child_env.items() if k != "GOSHOP_DATABASE_URL"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = spawn(
            ["-m", "goshop_common.devinfra.run", "--data-dir", str(tmp_path), "--pg-port", str(port)],
            env,
            tmp_path / "dev.log",
        )
        assert process.wait(30) == 2
    assert "GOSHOP_DATABASE_URL" in (tmp_path / "dev.log").read_text()
