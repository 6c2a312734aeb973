"""Where ``make run``'s shop is, for the command-line tools (development only).

``make run`` starts its database and broker on ports of its choosing
(``GOSHOP_DEV_PG_PORT``, ``GOSHOP_DEV_KAFKA_PORT``) and writes their
addresses to ``<data dir>/shop.env`` (``KEY=value`` lines a shell can load
with ``set -a; . .goshop/shop.env; set +a``); it removes the file when it
stops. ``python -m goshop_<svc>.migrate`` and ``python -m
goshop_common.messaging.deadletters`` read it (``cli_environ``) for the
variables that are not set, so they find the shop without being told.

Only in development (``GOSHOP_ENV`` unset or ``development``), only for a
variable that is unset, and only while a runner holds the data directory's
lock (goshop_devtools.runner_lock): a file left by a killed runner names
ports nothing listens on. The data directory is ``GOSHOP_DEV_DIR``, else the
repository's ``.goshop`` (make run's default).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Mapping
from pathlib import Path

FILE_NAME = "shop.env"
# Held by a live runner (goshop_devtools.runner_lock).
LOCK_NAME = "runner.lock"
# The variables the file sets for the tools; the gateway's URL is for people.
DATABASE_URL = "GOSHOP_DATABASE_URL"
KAFKA_BOOTSTRAP = "GOSHOP_KAFKA_BOOTSTRAP"
GATEWAY_URL = "GOSHOP_GATEWAY_URL"
# Set by the file itself: a shell that loaded it is recognisable, so a later
# make run in that shell does not take the loaded addresses for its own
# settings (goshop_devtools.run).
MARKER = "GOSHOP_DEV_SHOP_ENV"
TOOL_KEYS = (DATABASE_URL, KAFKA_BOOTSTRAP)

REPOSITORY_DATA_DIR = Path(__file__).resolve().parents[1] / ".goshop"


def write(data_dir: Path, values: Mapping[str, str]) -> Path:
    """Write ``values`` (and the marker) to ``data_dir``'s shop.env; readable
    by its owner only: the database URL carries the (development) password."""
    path = Path(data_dir) / FILE_NAME
    lines = [f"# The shop make run started; removed when it stops. Load with: set -a; . {path}; set +a"]
    lines += [f"{key}={_quoted(value)}" for key, value in {**values, MARKER: str(path)}.items()]
    scratch = path.with_suffix(".tmp")
    scratch.write_text("\n".join(lines) + "\n")
    scratch.chmod(0o600)
    # Renamed over: a tool never reads half a file.
    scratch.replace(path)
    return path


def _quoted(value: str) -> str:
    # Single quotes for the shell; a value with one in it has no place here.
    if "'" in value or "\n" in value:
        raise ValueError(f"cannot write {value!r} to a shop.env")
    return f"'{value}'"


def read(path: Path) -> dict[str, str]:
    """The ``KEY='value'`` lines of a shop.env; comments and blanks skipped."""
    values = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip().removeprefix("'").removesuffix("'")
    return values


def runner_alive(data_dir: Path) -> bool:
    """Whether a make run holds ``data_dir``: its lock cannot be taken."""
    try:
        fd = os.open(Path(data_dir) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        # Shared and at once, released at once: a runner starting meanwhile
        # waits for it (goshop_devtools.runner_lock.RunnerLock.acquire).
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return False


def shop_file(environ: Mapping[str, str]) -> Path:
    """Where the running shop's file would be."""
    data_dir = environ.get("GOSHOP_DEV_DIR") or REPOSITORY_DATA_DIR
    return Path(data_dir).resolve() / FILE_NAME


def cli_environ(environ: Mapping[str, str] | None = None) -> tuple[Mapping[str, str], Path | None]:
    """``environ`` (default ``os.environ``) with the unset TOOL_KEYS taken
    from the running shop's file, and that file; ``environ`` as it is and
    None outside development, with every key set, or with no runner alive."""
    environ = os.environ if environ is None else environ
    if environ.get("GOSHOP_ENV", "development") != "development":
        return environ, None
    missing = [key for key in TOOL_KEYS if not environ.get(key)]
    if not missing:
        return environ, None
    path = shop_file(environ)
    if not path.is_file() or not runner_alive(path.parent):
        return environ, None
    try:
        values = read(path)
    except OSError:
        return environ, None
    found = {key: values[key] for key in missing if values.get(key)}
    if not found:
        return environ, None
    return {**environ, **found}, path


def not_reachable(what: str, address: str, reason: str, setting: str, source: Path | None) -> str:
    """The one line a tool prints when its server is away."""
    origin = setting if source is None else f"{setting} from {source}"
    return f"{what} at {address} not reachable: {reason}; is make run running? ({origin})"
