from goshop_common.db.migrations import run_migrations
from goshop_orders.models import SCHEMA, Base

run_migrations(Base.metadata, SCHEMA)
