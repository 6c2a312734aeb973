"""A consumer group that loses a member, or its broker for a while, goes on
consuming: the survivors take the partitions over and the saga resumes.

Both faults make every member rejoin its group, and a join on Tansu lasts
about 3 s. A consumer that let a join complete while it was not inside
``poll()`` (waiting for the doorbell, say) lost the assignment the join
brought and rejoined, again and again, for good
(goshop_common.messaging.consumer.rebalancing).
"""

import signal
import time
import uuid

import pytest
import sqlalchemy as sa

from goshop_devtools.postgres import free_port
from tests.e2e.conftest import spawn, stop, wait_for
from tests.support import new_customer

# The consumers' session timeout (goshop_common.messaging.kafka.CONSUMER_DEFAULTS).
SESSION_TIMEOUT_SECONDS = 6
SETTLE_SECONDS = 60


@pytest.fixture
def env(worker_env, own_broker):
    return {**worker_env, **own_broker.client_env}


class Workers:
    def __init__(self, env, log_dir):
        self.env, self.log_dir, self.processes = env, log_dir, {}

    def start(self, name: str, module: str) -> None:
        port = free_port()
        self.processes[name] = spawn(["-m", module, "--port", str(port)], self.env, self.log_dir / f"{name}.log")
        wait_for(port, "/ready", process=self.processes[name])

    def kill(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes.pop(name).wait()

    def tails(self) -> str:
        return "\n".join(f"== {name}\n{(self.log_dir / f'{name}.log').read_text()[-1500:]}" for name in self.processes)

    def stop_all(self) -> dict[str, int]:
        return {name: stop(process, signal.SIGTERM, timeout=30) for name, process in self.processes.items()}


def _unsettled(engine, ids) -> int:
    with engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT count(*) FROM orders.orders WHERE id = ANY(:ids) AND status = 'new'"),
            {"ids": [uuid.UUID(i) for i in ids]},
        ).scalar_one()


def _wait_settled(engine, ids, workers, what: str) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while (left := _unsettled(engine, ids)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == 0, f"{left} of {len(ids)} orders still new {SETTLE_SECONDS} s after {what}\n{workers.tails()}"


def test_the_survivors_take_over_from_a_killed_member_and_resume_after_the_broker_froze(
    env, own_broker, tmp_path, testapp, orders_client, engine
):
    customer = new_customer(testapp)
    workers = Workers(env, tmp_path)

    def place(count: int) -> list[str]:
        return [
            orders_client.post_json("/v1/orders", {"amount_cents": 10001 + n}, headers=customer["headers"]).json["id"]
            for n in range(count)
        ]

    try:
        workers.start("outboxer", "goshop_outboxer")
        workers.start("orders", "goshop_orders.consumer")
        workers.start("payments-1", "goshop_payments.consumer")
        workers.start("payments-2", "goshop_payments.consumer")
        warm = place(6)
        _wait_settled(engine, warm, workers, "start")

        # Killed while the orders stream in: its partitions go to payments-1
        # once the broker has given up on its session.
        first = place(30)
        workers.kill("payments-2")
        first += place(30)
        _wait_settled(engine, first, workers, "a member was killed")

        # Frozen for twice the session timeout: every member is forgotten and
        # must join its group again.
        own_broker.pause()
        try:
            time.sleep(2 * SESSION_TIMEOUT_SECONDS)
            during = place(20)
        finally:
            own_broker.resume()
        _wait_settled(engine, during, workers, "the broker came back")
    finally:
        codes = workers.stop_all()
    assert codes == {"outboxer": 0, "orders": 0, "payments-1": 0}
