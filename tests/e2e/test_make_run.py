"""``make run``'s program: Postgres, migrations and users come up, and Ctrl-C
takes all of it down again."""

import signal
import socket

from goshop_common.devinfra.postgres import free_port
from tests.e2e.conftest import Http, spawn, stop, wait_for


def _listening(port):
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_goshop_dev_starts_the_shop_and_ctrl_c_stops_everything(tmp_path, child_env):
    env = {k: v for k, v in child_env.items() if k != "GOSHOP_DATABASE_URL"}
    pg_port = free_port()
    base = free_port()
    while _listening(base + 1):
        base = free_port()
    users_port = base + 1
    log_path = tmp_path / "dev.log"
    process = spawn(
        [
            "-m",
            "goshop_common.devinfra.run",
            "--data-dir",
            str(tmp_path / "state"),
            "--pg-port",
            str(pg_port),
            "--base-port",
            str(base),
        ],
        env,
        log_path,
    )
    try:
        wait_for(users_port, timeout=90, process=process)
        http = Http(users_port)
        status, _, body = http.request(
            "POST", "/v1/users/register", {"email": "dev@example.com", "password": "12345678"}
        )
        assert status == 201, body
        assert _listening(pg_port)
        assert (tmp_path / "state" / "dev-keys" / "jwt-dev-eddsa.pem").exists()
    finally:
        code = stop(process, sig=signal.SIGINT, timeout=60)
    log = log_path.read_text()
    assert code == 0, log
    assert "the shop is up" in log
    assert not _listening(users_port), "users still serving after Ctrl-C"
    assert not _listening(pg_port), "postgres still running after Ctrl-C"


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
