"""The scanner's contract (``make scan``, run by ``make test``): checkov over every
kustomize render a cluster can get and over docker/Dockerfile, offline, and every check
it does not enforce skipped for a reason written next to the skip.

The scan itself runs in ``make scan`` (checkov has a venv of its own); this proves,
without it, that the skip list is reasoned and the scan covers what it should.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".checkov.yaml"


def _dry_scan() -> str:
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "scan"],  # noqa: S607 (make from PATH, as the README says)
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "MAKEFLAGS": ""},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_skipped_check_says_why():
    config = yaml.safe_load(CONFIG.read_text())
    skipped = config["skip-check"]
    assert skipped, "an empty skip list needs no file"
    lines = CONFIG.read_text().splitlines()
    for check in skipped:
        (at,) = [i for i, line in enumerate(lines) if line.strip() == f"- {check}"]
        reason = []
        for line in reversed(lines[:at]):
            if not line.strip().startswith("#"):
                break
            reason.append(line.strip().lstrip("# "))
        assert len(" ".join(reason)) >= 60, f"{check} is skipped without a reason above it"


def test_the_scan_is_offline_and_fails_on_what_is_not_skipped():
    config = yaml.safe_load(CONFIG.read_text())
    assert config["skip-download"] is True
    assert set(config["framework"]) == {"kubernetes", "dockerfile"}
    for lenient in ("soft-fail", "soft-fail-on", "skip-framework"):
        assert lenient not in config, f".checkov.yaml must not {lenient}"
    assert "BC_SKIP_MAPPING=TRUE" in _dry_scan()


def test_every_annotated_skip_says_why():
    annotations = 0
    for path in (ROOT / "k8s").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            for key, value in ((doc or {}).get("metadata", {}).get("annotations") or {}).items():
                if key.startswith("checkov.io/skip"):
                    annotations += 1
                    check, _, reason = value.partition("=")
                    assert re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", check), f"{path.name}: {key}: {value}"
                    assert len(reason) >= 30, f"{path.name}: {key} skips {check} without a reason"
    assert annotations, "the in-cluster infrastructure's skips are annotations"


def test_the_scan_covers_every_render_and_the_dockerfile():
    out = _dry_scan()
    makefile = (ROOT / "Makefile").read_text()
    assert "for t in $(SCAN_TARGETS)" in makefile
    targets = re.search(r"^SCAN_TARGETS := (.+)$", makefile, re.M).group(1).split()
    rendered = {target.partition(":")[2] for target in targets}
    overlays = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "k8s" / "overlays").glob("*/kustomization.yaml")}
    assert rendered == {"k8s", *overlays}
    assert re.search(r"checkov --config-file \.checkov\.yaml -d \S+renders", out)
    assert "checkov --config-file .checkov.yaml -f docker/Dockerfile" in out


def test_make_test_runs_the_scan():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest: ", 1)[1].split("\n\n", 1)[0]
    assert "$(MAKE) --no-print-directory scan" in recipe
