"""Tilt's live update, run: the runtime half of the Tiltfile's contract (the
Starlark half is tests/devloop/test_tiltfile.py).

The containers run what the Tiltfile deploys: the command after its
``_reloading`` edit (``serve ... --reload`` for servers, ``hupper -m <module>``
for workers), the ConfigMap's environment, the root filesystem writable as the
Tiltfile leaves it. Changed files reach the container the way a live_update
``sync`` puts them there (a copy into the running container at the sync's remote
path), and a ``run`` step is executed in the container as the image's user.
Only the ports differ: the host network, so free ones are appended (the last
``--port`` wins).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from goshop_common.db import roles
from goshop_devtools.postgres import free_port
from tests.containers.conftest import ROOT, Container, Containers
from tests.devloop.test_tiltfile import TILTFILE, Step, Tilt, _deployed, evaluate
from tests.support import role_url

# What a developer waits for between saving a file and seeing it served.
RELOAD_BUDGET = 5.0
STARTUP_TIMEOUT = 90.0
IMAGE_USER = "10001"
# hupper's worker reports the files it has imported to the monitor about once a
# second (its default interval); a file changed before that is the monitor's
# baseline, not a change. A developer's first save comes later than this.
RELOADER_SETTLE = 2.5


@pytest.fixture(scope="module")
def tilt() -> Tilt:
    return evaluate(TILTFILE.read_text(), {"infra": "cluster"})


# --- what the Tiltfile deploys -------------------------------------------------


def dev_workload(tilt: Tilt, deployment: str) -> tuple[dict, dict[str, str]]:
    """The goshop container of ``deployment`` as the Tiltfile deploys it, and the
    environment its ConfigMaps give it (secret-backed variables left out)."""
    objects = _deployed(tilt)
    (obj,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment]
    (container,) = [c for c in obj["spec"]["template"]["spec"]["containers"] if c["image"].startswith("goshop-")]
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
    return container, env


def live_update(tilt: Tilt, image: str) -> list[Step]:
    (build,) = [b for b in tilt.of("docker_build") if b["ref"] == image]
    return build["live_update"]


def synced_to(steps: list[Step], path: str) -> str:
    """Where a sync step puts the repo file ``path`` in the container."""
    for step in steps:
        if step.kind != "sync":
            continue
        local, remote = step.args
        if path == local or path.startswith(local.rstrip("/") + "/"):
            return remote + path[len(local) :]
    raise AssertionError(f"no live_update sync covers {path}")


def runs_on(steps: list[Step], path: str) -> list[str]:
    """The commands of the run steps a change to ``path`` triggers."""
    return [step.args[0] for step in steps if step.kind == "run" and path in step.args[1]]


def argv(container: dict) -> list[str]:
    return list(container.get("command") or []) + list(container.get("args") or [])


def read_only(container: dict) -> bool:
    return container.get("securityContext", {}).get("readOnlyRootFilesystem", False)


# --- talking to the container ----------------------------------------------------


def get(port: int, path: str) -> tuple[int, dict | None]:
    """(status, JSON body); (0, None) while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError):
        return 0, None


def quiet_logs(container: Container) -> str:
    """The container's log without the per-request lines (probes drown the rest)."""
    result = subprocess.run(
        [container.engine, "logs", container.name], capture_output=True, text=True, timeout=60, check=False
    )
    lines = (result.stdout + result.stderr).splitlines()
    return "\n".join(line for line in lines if '"goshop.request"' not in line)[-4000:]


def wait_ready(container: Container, port: int, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get(port, "/ready")[0] == 200:
            return
        assert container.running(), f"{container.name} exited {container.state()}:\n{quiet_logs(container)}"
        time.sleep(0.3)
    raise AssertionError(f"{container.name}: /ready not 200 within {timeout:.0f} s:\n{quiet_logs(container)}")


def edited(path: str, old: str, new: str, tmp_path: Path) -> Path:
    """A copy of the repo file ``path`` with ``old`` replaced by ``new`` once, in
    a directory of its own under the file's own name (what a save leaves for a
    sync to copy)."""
    text = (ROOT / path).read_text()
    assert text.count(old) == 1, f"{path} no longer has {old!r} once: update this test"
    target = tmp_path / uuid.uuid4().hex / Path(path).name
    target.parent.mkdir(parents=True)
    target.write_text(text.replace(old, new))
    return target


def sync_and_time(container: Container, source: Path, remote: str, port: int, path: str, marker: str) -> float:
    """Copies ``source`` to ``remote`` in the container; the seconds until
    ``path`` answers with ``marker`` (bounded: a little over the budget)."""
    started = time.monotonic()
    container.copy_in(source, remote)
    deadline = started + RELOAD_BUDGET * 4
    while time.monotonic() < deadline:
        status, body = get(port, path)
        if status == 200 and isinstance(body, dict) and body.get("synced") == marker:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(
        f"{path} never answered the synced change within {RELOAD_BUDGET * 4:.0f} s "
        f"(last: {get(port, path)}):\n{quiet_logs(container)}"
    )


# --- the containers --------------------------------------------------------------


@pytest.fixture(scope="module")
def users_dev(tilt, containers: Containers, images, database_url) -> tuple[Container, int]:
    """The users Deployment's container as Tilt runs it; (container, public port)."""
    spec, env = dev_workload(tilt, "users")
    command = argv(spec)
    assert "--reload" in command, f"the Tiltfile runs users without a reloader: {command}"
    port, metrics_port = free_port(), free_port()
    container = containers.run(
        images["users"],
        [*command, "--port", str(port), "--metrics-port", str(metrics_port)],
        {**env, "GOSHOP_DATABASE_URL": role_url(database_url, roles.USERS)},
        name="users-tilt",
        read_only=read_only(spec),
    )
    wait_ready(container, port)
    time.sleep(RELOADER_SETTLE)
    return container, port


@pytest.fixture(scope="module")
def outboxer_dev(tilt, containers: Containers, images, database_url, kafka_broker) -> tuple[Container, int]:
    """The outboxer Deployment's container as Tilt runs it; (container, health port)."""
    spec, env = dev_workload(tilt, "outboxer")
    command = argv(spec)
    assert Path(command[0]).name == "hupper", f"the Tiltfile runs the outboxer without hupper: {command}"
    port = free_port()
    container = containers.run(
        images["outboxer"],
        [*command, "--port", str(port)],
        {
            **env,
            "GOSHOP_DATABASE_URL": role_url(database_url, roles.OUTBOXER),
            **kafka_broker.client_env,
        },
        name="outboxer-tilt",
        read_only=read_only(spec),
    )
    wait_ready(container, port)
    time.sleep(RELOADER_SETTLE)
    return container, port


# --- the tests -------------------------------------------------------------------


def test_tilt_leaves_the_dev_containers_root_filesystem_writable_for_syncs(tilt):
    for deployment in ("users", "outboxer"):
        spec, _ = dev_workload(tilt, deployment)
        assert not read_only(spec), f"{deployment}: a read-only root filesystem refuses every sync"


def live_view_answering(marker: str, tmp_path):
    """A copy of goshop_common/web/health.py whose /live also says ``marker``."""
    return edited(
        "goshop_common/web/health.py",
        'def live_view(request: Request) -> dict[str, str]:\n    return {"status": "ok"}',
        f'def live_view(request: Request) -> dict[str, str]:\n    return {{"status": "ok", "synced": "{marker}"}}',
        tmp_path,
    )


def test_a_synced_change_to_common_code_is_served_by_the_reloading_server(tilt, users_dev, tmp_path):
    container, port = users_dev
    status, body = get(port, "/live")
    assert (status, body) == (200, {"status": "ok"})
    marker = uuid.uuid4().hex[:8]
    path = "goshop_common/web/health.py"
    source = live_view_answering(marker, tmp_path)
    steps = live_update(tilt, "goshop-users")
    assert runs_on(steps, path) == [], f"a change to {path} should need no reinstall"
    seconds = sync_and_time(container, source, synced_to(steps, path), port, "/live", marker)
    print(f"\nusers (serve --reload): {path} synced, change served after {seconds:.1f} s")
    assert seconds <= RELOAD_BUDGET, f"the change took {seconds:.1f} s to be served (budget {RELOAD_BUDGET} s)"
    # The restarted process still reaches its database.
    assert get(port, "/ready")[0] == 200
    assert container.running()


def test_a_synced_change_is_served_by_the_worker_under_hupper(tilt, outboxer_dev, tmp_path):
    container, port = outboxer_dev
    status, body = get(port, "/live")
    assert (status, body) == (200, {"status": "ok"})
    marker = uuid.uuid4().hex[:8]
    # The worker's /live is the services' own view (goshop_common.web.health).
    path = "goshop_common/web/health.py"
    source = live_view_answering(marker, tmp_path)
    steps = live_update(tilt, "goshop-outboxer")
    seconds = sync_and_time(container, source, synced_to(steps, path), port, "/live", marker)
    print(f"\noutboxer (hupper -m): {path} synced, change served after {seconds:.1f} s")
    assert seconds <= RELOAD_BUDGET, f"the change took {seconds:.1f} s to be served (budget {RELOAD_BUDGET} s)"
    # The restarted worker is connected again: database and broker.
    deadline = time.monotonic() + 30
    while get(port, "/ready")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert get(port, "/ready")[0] == 200, quiet_logs(container)


def test_a_synced_setup_py_is_installed_by_the_run_step_as_the_image_user(tilt, users_dev, tmp_path):
    container, _ = users_dev
    version = re.search(r'version="([^"]+)"', (ROOT / "setup.py").read_text()).group(1)
    bumped = f"{version}.post{uuid.uuid4().int % 1000}"
    source = edited("setup.py", f'version="{version}"', f'version="{bumped}"', tmp_path)
    steps = live_update(tilt, "goshop-users")
    commands = runs_on(steps, "setup.py")
    assert commands, "no live_update run step is triggered by setup.py"

    def metadata() -> tuple[str, str]:
        probe = container.exec(
            "python",
            "-c",
            "from importlib.metadata import version, entry_points as e; "
            "print(version('goshop'), e(group='paste.app_factory', name='users')['users'].value)",
            user=IMAGE_USER,
        )
        assert probe.returncode == 0, probe.stderr
        installed, app = probe.stdout.split()
        return installed, app

    assert metadata() == (version, "goshop_users:main")
    container.copy_in(source, synced_to(steps, "setup.py"))
    for command in commands:
        started = time.monotonic()
        # Tilt runs a string command with `sh -c`. No package index: a kind pod
        # may have no way out, and the step must not need one.
        result = container.exec("sh", "-c", f"PIP_NO_INDEX=1 {command}", user=IMAGE_USER)
        print(f"\n`{command}` as uid {IMAGE_USER}: exit {result.returncode} after {time.monotonic() - started:.1f} s")
        assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    # The new metadata, and the entry points the ini files' `egg:goshop#users` need.
    assert metadata() == (bumped, "goshop_users:main")
