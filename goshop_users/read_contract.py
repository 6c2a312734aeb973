"""What another goshop process may read of the users schema: an account's id
and email, nothing else.

The ops console finds a customer's orders by the email the customer gives
support. It reads these names, the one import from this package that the
import contract allows (``.importlinter``), and the ops database role may
``SELECT`` exactly these two columns (the users migration
20261207060000_ops_reads_emails): never a password hash, never a session.
"""

from goshop_users.models import User

#: users.users, of which only ``id`` and ``email`` (stored trimmed and lower-case) may be read.
USERS = User.__table__
#: The columns the ops role may read, as the migration grants them.
READABLE_COLUMNS = ("id", "email")

__all__ = ["READABLE_COLUMNS", "USERS"]
