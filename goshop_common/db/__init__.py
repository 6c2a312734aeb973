"""The database: the engine and ``request.dbsession`` (``session``), the
Alembic environment every service's migrations share (``migrations``) and the
goose-style migration command (``migrate``).

``config.include("goshop_common.db")`` gives an app its engine and sessions.
"""

from goshop_common.db.session import includeme

__all__ = ["includeme"]
