"""Which requests pyramid_tm wraps in a transaction."""

from types import SimpleNamespace

import pytest

from goshop_common.db.session import needs_transaction


@pytest.mark.parametrize(
    ("path", "wrapped"),
    [("/live", False), ("/ready", True), ("/v1/users/me", True), ("/live/", True), ("/v1/live", True)],
)
def test_only_live_runs_without_a_request_transaction(path, wrapped):
    assert needs_transaction(SimpleNamespace(environ={"PATH_INFO": path})) is wrapped
