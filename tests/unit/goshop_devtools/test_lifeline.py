"""The status a process under make run's lifeline exits with."""

from __future__ import annotations

import pytest

from goshop_devtools.lifeline import exit_status


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (3, 3), (256 + 2, 2), ("a message", 1)])
def test_the_exit_status_is_what_sys_exit_would_give(code, status):
    assert exit_status(code) == status
