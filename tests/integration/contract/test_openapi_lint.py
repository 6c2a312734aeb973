"""Every service's /openapi.json passes Redocly CLI's ``recommended`` ruleset
and Spectral's ``spectral:oas`` with no error.

The linters are node packages that `make test` installs with npm ci into
.venv/node (Makefile: node-tools; package.json and package-lock.json pin
them). They run offline: the rulesets are built in (redocly.yaml,
.spectral.yaml), and Redocly's telemetry and update check are off. Without
them the tests skip and say why, except under CI=true, where a skip would
hide that they never ran.

A failure lists every error (rule, where, what), not the first: the
documents are fixed rule by rule from that list. Warnings are not failures,
but they are printed.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[3]
NODE_BIN = ROOT / ".venv" / "node" / "node_modules" / ".bin"
SERVICES = ("users", "orders", "payments", "ops", "gateway")
OFFLINE = {
    "REDOCLY_TELEMETRY": "off",
    "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true",
    # No colour codes in what the tests parse and print.
    "NO_COLOR": "1",
    "FORCE_COLOR": "0",
}
# Spectral's severities: 0 error, 1 warning, 2 info, 3 hint.
SPECTRAL_SEVERITY = {0: "error", 1: "warn", 2: "info", 3: "hint"}


@dataclass(frozen=True)
class Problem:
    severity: str
    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity} {self.rule} at {self.where}: {self.message}"


def _tool(name: str) -> Path:
    path = NODE_BIN / name
    if not path.exists():
        why = f"{name} not installed in {NODE_BIN}: `make node-tools` (npm ci from package-lock.json) installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; make test installs it, and CI must run these tests")
        pytest.skip(why)
    return path


def _run(args: list[str | Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args],
        cwd=ROOT,
        env={**os.environ, **OFFLINE},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def redocly(document: Path) -> list[Problem]:
    result = _run(
        [_tool("redocly"), "lint", "--config", "redocly.yaml", "--format", "json", "--max-problems", "10000", document]
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"redocly lint gave no JSON (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    return [
        Problem(
            problem["severity"],
            problem["ruleId"],
            ", ".join(location.get("pointer", "?") for location in problem.get("location", [])) or "#",
            problem["message"],
        )
        for problem in report["problems"]
    ]


def spectral(document: Path) -> list[Problem]:
    # Exit 1 is "errors found"; anything else but 0 is a run that could not lint.
    result = _run([_tool("spectral"), "lint", "--ruleset", ".spectral.yaml", "--format", "json", "--quiet", document])
    try:
        report = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        pytest.fail(f"spectral lint gave no JSON (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    if result.returncode not in (0, 1):
        pytest.fail(f"spectral lint failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    return [
        Problem(
            SPECTRAL_SEVERITY[problem["severity"]],
            problem["code"],
            "#/" + "/".join(str(part).replace("~", "~0").replace("/", "~1") for part in problem["path"]),
            problem["message"],
        )
        for problem in report
    ]


LINTERS = {"redocly": redocly, "spectral": spectral}


@pytest.fixture(scope="module")
def documents(upstream_urls, gateway_url) -> dict[str, dict]:
    urls = {**upstream_urls, "gateway": gateway_url}
    return {name: requests.get(f"{urls[name]}/openapi.json", timeout=10).json() for name in SERVICES}


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("linter", LINTERS)
def test_the_document_has_no_lint_error(documents, service, linter, tmp_path):
    document = tmp_path / f"{service}.openapi.json"
    document.write_text(json.dumps(documents[service], indent=2))
    problems = LINTERS[linter](document)
    for problem in problems:
        print(f"{linter} {service}: {problem}")
    errors = sorted(str(p) for p in problems if p.severity == "error")
    assert not errors, f"{linter} finds {len(errors)} error(s) in {service}'s /openapi.json:\n" + "\n".join(errors)
