"""What another goshop process may read of the orders schema, and nothing
it may write.

The ops assistant explains an order's saga from the orders service's own
tables. Rather than reach into ``goshop_orders.models``, it reads these names
— the one import from this package that the import contract allows
(``.importlinter``). A change to anything listed here is a
change to that contract: the ops tests say what depends on it.

Readers use read-only transactions (``goshop_ops`` binds its sessions with
``postgresql_readonly``), so PostgreSQL itself refuses a write through them.
"""

from goshop_orders.models import INBOX, NEW, OUTBOX, STATUSES, Order
from goshop_orders.sweeper import PAYMENT_TIMEOUT

#: orders.orders: id, user_id, amount_cents, currency, status, reason, created_at, updated_at.
ORDERS = Order.__table__
#: orders.outbox: the events orders wrote (order.created, order.cancelled), with their publication state.
ORDERS_OUTBOX = OUTBOX
#: orders.inbox: the events the orders consumer applied (payment.*), by event id.
#: The reason of an order the payment timeout cancelled.
PAYMENT_TIMEOUT_REASON = PAYMENT_TIMEOUT
ORDERS_INBOX = INBOX
#: The status every order starts in, and every status an order can have.
INITIAL_STATUS = NEW
ORDER_STATUSES = STATUSES


def order_as_json(row) -> dict:
    """A row of ``ORDERS`` as the orders API shows the order (the same
    function: ``Order.as_json`` reads only the row's columns)."""
    return Order.as_json(row)


__all__ = [
    "INITIAL_STATUS",
    "ORDERS",
    "ORDERS_INBOX",
    "ORDERS_OUTBOX",
    "ORDER_STATUSES",
    "PAYMENT_TIMEOUT_REASON",
    "order_as_json",
]
