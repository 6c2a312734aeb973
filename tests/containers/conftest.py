"""The container tier (``make test-containers``): the six images built once
with `make images`, and containers run from them on the host network against
the embedded PostgreSQL and broker the other tiers use.

Whichever engine can run a container is used: podman (no daemon) or docker.
Where neither can, every test here is skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = {
    "users": "goshop-users:dev",
    "orders": "goshop-orders:dev",
    "payments": "goshop-payments:dev",
    "outboxer": "goshop-outboxer:dev",
    "gateway": "goshop-gateway:dev",
    "ops": "goshop-opsassistant:dev",
}
# Podman on the build machines: the runtime may not raise RLIMIT_NPROC/NOFILE
# itself ("setrlimit: operation not permitted"), so the limits are given.
PODMAN_RUN_FLAGS = ("--ulimit", "nproc=32768:32768", "--ulimit", "nofile=20000:20000")


def _runs_containers(engine: str) -> str | None:
    """None when ``engine`` can run a container here, else why not."""
    if shutil.which(engine) is None:
        return f"{engine} is not installed"
    info = subprocess.run([engine, "info"], capture_output=True, text=True, timeout=60, check=False)
    if info.returncode != 0:
        return f"`{engine} info` fails: {(info.stderr or info.stdout).strip().splitlines()[-1:]}"
    return None


@pytest.fixture(scope="session")
def engine() -> str:
    reasons = []
    for candidate in ("podman", "docker"):
        reason = _runs_containers(candidate)
        if reason is None:
            return candidate
        reasons.append(reason)
    pytest.skip("no container engine runs here: " + "; ".join(reasons))


@dataclasses.dataclass
class Container:
    engine: str
    name: str

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([self.engine, *args], capture_output=True, text=True, timeout=timeout, check=False)

    def state(self) -> dict:
        result = self._run("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", self.name)
        status, _, code = result.stdout.strip().partition(" ")
        return {"status": status, "exit_code": int(code) if code else None}

    def running(self) -> bool:
        return self.state()["status"] == "running"

    def exec(self, *command: str, user: str | None = None) -> subprocess.CompletedProcess:
        return self._run("exec", *(["--user", user] if user else []), self.name, *command)

    def copy_in(self, source: Path, destination: str) -> None:
        result = self._run("cp", str(source), f"{self.name}:{destination}")
        assert result.returncode == 0, result.stderr

    def logs(self) -> str:
        result = self._run("logs", self.name)
        return (result.stdout + result.stderr)[-4000:]

    def stop(self, grace: int = 10) -> float:
        """SIGTERM, then SIGKILL after ``grace`` seconds (what `docker stop`
        and a pod's termination do); returns the seconds it took."""
        started = time.monotonic()
        self._run("stop", "--time", str(grace), self.name, timeout=grace + 30)
        return time.monotonic() - started

    def remove(self) -> None:
        self._run("rm", "--force", self.name)


class Containers:
    """Starts containers from the images and removes them all at the end."""

    def __init__(self, engine: str):
        self.engine = engine
        self.started: list[Container] = []

    def flags(self) -> tuple[str, ...]:
        return PODMAN_RUN_FLAGS if self.engine == "podman" else ()

    def run(
        self,
        image: str,
        command: list[str],
        env: dict[str, str],
        *,
        name: str,
        volumes: dict[str, str] | None = None,
        read_only: bool = True,
        detach: bool = True,
        timeout: float = 120,
    ) -> Container | subprocess.CompletedProcess:
        """``image`` running ``command`` on the host network; detached (a
        Container) or to completion (its CompletedProcess). Read-only with a
        /tmp of its own by default, as the Kubernetes manifests run them."""
        container = Container(self.engine, f"goshop-test-{name}-{uuid.uuid4().hex[:6]}")
        args = [self.engine, "run", "--name", container.name, "--network", "host", *self.flags()]
        if read_only:
            args += ["--read-only", "--tmpfs", "/tmp"]  # noqa: S108 (the container's own /tmp)
        for host_path, container_path in (volumes or {}).items():
            args += ["--volume", f"{host_path}:{container_path}:ro"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        args += ["--detach"] if detach else []
        args += [image, *command]
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        self.started.append(container)
        if not detach:
            return result
        assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
        return container

    def remove_all(self) -> None:
        for container in self.started:
            container.remove()


@pytest.fixture(scope="session")
def images(engine) -> dict[str, str]:
    """The six images, built once with the Makefile's own target (and the
    base image, a stand-in where Docker Hub cannot be reached)."""
    started = time.monotonic()
    result = subprocess.run(
        ["make", "--no-print-directory", "images", f"DOCKER={engine}"],  # noqa: S607 (make from PATH, as README says)
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, f"make images failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    print(f"\nmake images ({engine}): {time.monotonic() - started:.0f} s")
    return IMAGES


@pytest.fixture(scope="module")
def containers(engine, images) -> Iterator[Containers]:
    running = Containers(engine)
    yield running
    running.remove_all()
