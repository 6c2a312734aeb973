"""A service's migration history as its code has it, read from the revision
files without Alembic: a service checks its schema against it at run time
(goshop_common.web.health), where importing Alembic would cost its start
time and log a line per Alembic plugin before the logging is set up.

tests/unit/goshop_common/test_revisions.py holds it to Alembic's reading.
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class History:
    """A service's schema, the heads of its history and every revision in it."""

    schema: str
    heads: frozenset[str]
    known: frozenset[str]


def _assignments(path: Path) -> dict[str, object]:
    """The module-level ``revision`` and ``down_revision`` of a revision file."""
    found = {}
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("revision", "down_revision"):
                found[name] = ast.literal_eval(node.value)
    return found


def read_history(ini_path: Path) -> History:
    """The history of the Alembic config ``ini_path`` (its ``script_location``
    is ``package:directory``, as every goshop alembic.ini's)."""
    parser = configparser.ConfigParser()
    parser.read(ini_path)
    package, _, directory = parser.get("alembic", "script_location").partition(":")
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise LookupError(f"{ini_path}: no package {package}")
    versions = Path(spec.origin).parent / directory / "versions"
    known: set[str] = set()
    parents: set[str] = set()
    for path in versions.glob("*.py"):
        found = _assignments(path)
        if "revision" not in found:
            continue
        known.add(str(found["revision"]))
        down = found.get("down_revision")
        # None (the first), one id, or a tuple of them (a merge).
        parents.update(str(d) for d in (down if isinstance(down, tuple | list) else [down] if down else []))
    return History(parser.get("alembic", "goshop.schema"), frozenset(known - parents), frozenset(known))
