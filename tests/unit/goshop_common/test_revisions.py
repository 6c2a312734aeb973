"""goshop_common.db.revisions reads each service's history as Alembic does."""

from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from goshop_common.db.revisions import read_history

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("service", ["users", "orders", "payments"])
def test_the_history_read_from_the_files_is_alembics(service):
    ini = ROOT / f"goshop_{service}" / "alembic.ini"
    scripts = ScriptDirectory.from_config(Config(str(ini)))
    history = read_history(ini)
    assert history.schema == service
    assert history.heads == frozenset(scripts.get_heads())
    assert history.known == frozenset(rev.revision for rev in scripts.walk_revisions())
