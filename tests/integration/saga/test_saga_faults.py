"""The saga under faults: a broker outage, and replicas side by side."""

import uuid

import sqlalchemy as sa

from tests.saga_runtime import SagaRuntime, saga_settings, wait_until


def create_order(client, customer, amount):
    return client.post_json("/v1/orders", {"amount_cents": amount}, headers=customer["headers"], status=201).json


def test_orders_are_accepted_while_the_broker_is_unreachable_and_settle_when_it_returns(
    service_settings, own_broker, orders_client, customer, engine
):
    runtime = SagaRuntime(saga_settings(service_settings, own_broker.bootstrap)).start()
    try:
        warm = create_order(orders_client, customer, 101)
        runtime.wait_settled([warm["id"]])

        # Frozen, not killed: a real Kafka comes back with its log, but a
        # restarted in-memory Tansu comes back empty, which no client survives
        # without losing what it had not consumed yet.
        own_broker.pause()
        during = [create_order(orders_client, customer, 200 + n) for n in range(5)]

        def relay_tried_and_failed():
            with engine.connect() as connection:
                return connection.execute(
                    sa.text(
                        "SELECT count(*) FROM orders.outbox WHERE published_at IS NULL "
                        "AND attempts > 0 AND last_error IS NOT NULL"
                    )
                ).scalar_one()

        wait_until(relay_tried_and_failed, timeout=60, message="relay attempts recorded on the rows")
        assert set(runtime.statuses([o["id"] for o in during]).values()) == {"new"}

        own_broker.resume()
        statuses = runtime.wait_settled([o["id"] for o in during], timeout=120)
        assert statuses == {o["id"]: ("cancelled" if o["amount_cents"] % 5 == 0 else "paid") for o in during}
    finally:
        runtime.stop()


def test_two_outboxers_and_two_payments_consumers_publish_every_row_and_charge_once(
    service_settings, kafka_broker, orders_client, customer, engine
):
    runtime = SagaRuntime(saga_settings(service_settings, kafka_broker.bootstrap)).start()
    runtime.add_outboxer()
    runtime.add_payments_consumer()
    try:
        orders = [create_order(orders_client, customer, 3000 + n) for n in range(60)]
        runtime.wait_settled([o["id"] for o in orders], timeout=120)
        ids = [uuid.UUID(o["id"]) for o in orders]
        with engine.connect() as connection:
            payments, distinct = connection.execute(
                sa.text("SELECT count(*), count(DISTINCT order_id) FROM payments.payments WHERE order_id = ANY(:i)"),
                {"i": ids},
            ).one()
            unpublished = connection.execute(
                sa.text("SELECT count(*) FROM orders.outbox WHERE published_at IS NULL")
            ).scalar_one()
        assert payments == distinct == 60
        assert unpublished == 0
        # Both relays did work: SKIP LOCKED shared the rows rather than one idling.
        assert all(outboxer.relays[0].stats.published > 0 for outboxer in runtime.outboxers)
    finally:
        runtime.stop()
