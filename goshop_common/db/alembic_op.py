"""The ``op`` a revision hands goshop_common's schema helpers (roles, inbox,
outbox, migrations): ``alembic.op`` itself, or an ``Operations`` (the tests
build one on a connection). Imported for annotations only."""

from __future__ import annotations

from types import ModuleType

from alembic.operations import Operations

Op = Operations | ModuleType
