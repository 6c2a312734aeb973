"""What another goshop process may read of the payments schema, and nothing
it may write: the payments side of the ops assistant's read contract (see
goshop_orders.read_contract for the rules)."""

from goshop_payments.models import INBOX, OUTBOX, REFUNDED, STATUSES, VOIDED, Payment

#: payments.payments: id, order_id, user_id, amount_cents, currency, status, reason, created_at,
#: refunded_at.
PAYMENTS = Payment.__table__
#: payments.outbox: the events payments wrote (payment.confirmed / payment.failed / payment.refunded).
PAYMENTS_OUTBOX = OUTBOX
#: payments.inbox: the events the payments consumer applied (order.created, order.cancelled), by event id.
PAYMENTS_INBOX = INBOX
#: Every status a payment can have; a refunded one was confirmed, a voided one never charged.
PAYMENT_STATUSES = STATUSES

__all__ = ["PAYMENTS", "PAYMENTS_INBOX", "PAYMENTS_OUTBOX", "PAYMENT_STATUSES", "REFUNDED", "VOIDED"]
