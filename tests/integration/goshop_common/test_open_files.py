"""The open-files limit a served process needs for its connection limit
(goshop_common.web.slowclients.fit_open_files), in a child process of its own:
a limit once lowered cannot be raised again without privileges."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from goshop_common.web.slowclients import SPARE_FILES

FIT = """
import logging, resource, sys
from goshop_common.web.slowclients import fit_open_files
logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))
print(fit_open_files(4096, besides=100))
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def fit(soft: int, hard: int) -> list[str]:
    """What fit_open_files(4096, besides=100) returns under these limits, its
    warning if any, and the soft limit it leaves."""
    ours = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if ours != resource.RLIM_INFINITY and ours < hard:
        pytest.skip(f"needs a hard limit on open files of {hard}; this one has {ours}")
    result = subprocess.run(
        [sys.executable, "-c", FIT.format(soft=soft, hard=hard)], capture_output=True, text=True, check=True
    )
    return result.stdout.splitlines()


def test_a_low_soft_limit_is_raised_to_fit_the_connections():
    assert fit(1024, 8192) == ["4096", str(4096 + 100 + SPARE_FILES)]


def test_a_hard_limit_too_low_lowers_the_connection_limit_and_says_so():
    *warning, fitting, soft = fit(1024, 2048)
    assert (fitting, soft) == (str(2048 - 100 - SPARE_FILES), "2048")
    assert warning == [
        f"WARNING the open files limit (2048) holds {fitting} client connections, not the 4096 asked for"
    ]


def test_a_limit_that_fits_is_left_alone():
    assert fit(10000, 10000) == ["4096", "10000"]
