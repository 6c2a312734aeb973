import datetime as dt
import uuid

import pytest

from goshop_payments.models import Payment
from tests.support import new_customer


@pytest.fixture
def payments_client(payments_app, seam_client):
    return seam_client(payments_app)


def add_payment(dbsession, order_id, user_id, status="confirmed"):
    """A payment on the test's connection, where the seamed payments app reads."""
    with dbsession.begin():
        dbsession.add(
            Payment(
                id=uuid.uuid4(),
                order_id=order_id,
                user_id=uuid.UUID(user_id),
                amount_cents=500,
                currency="RUB",
                status=status,
                reason=None,
                created_at=dt.datetime.now(dt.UTC),
            )
        )


def test_a_customer_sees_the_payment_of_their_order(payments_client, customer, dbsession):
    order_id = uuid.uuid4()
    add_payment(dbsession, order_id, customer["id"])
    body = payments_client.get("/v1/payments", params={"order_id": str(order_id)}, headers=customer["headers"]).json
    [payment] = body["payments"]
    assert (payment["order_id"], payment["status"], payment["amount_cents"]) == (str(order_id), "confirmed", 500)


def test_another_customers_payment_is_not_shown(payments_client, testapp, customer, dbsession):
    order_id = uuid.uuid4()
    add_payment(dbsession, order_id, customer["id"])
    stranger = new_customer(testapp)
    body = payments_client.get("/v1/payments", params={"order_id": str(order_id)}, headers=stranger["headers"]).json
    assert body == {"payments": []}


@pytest.mark.parametrize("params", [{}, {"order_id": "nope"}, {"order_id": ""}])
def test_a_missing_or_malformed_order_id_is_400(payments_client, customer, params):
    response = payments_client.get("/v1/payments", params=params, headers=customer["headers"], status=400)
    assert response.json["error"]


def test_payments_need_a_token(payments_client):
    payments_client.get("/v1/payments", params={"order_id": str(uuid.uuid4())}, status=401)


def test_payments_health(payments_client):
    payments_client.get("/live", status=200)
    payments_client.get("/ready", status=200)
