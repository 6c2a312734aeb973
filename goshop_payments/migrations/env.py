from goshop_common.db.migrations import run_migrations
from goshop_payments.models import SCHEMA, Base

run_migrations(Base.metadata, SCHEMA)
