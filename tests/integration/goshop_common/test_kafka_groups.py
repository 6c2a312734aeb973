"""A consumer group survives a member that dies without leaving it."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

from goshop_common.messaging.kafka import make_consumer
from goshop_domain.events import ORDERS_TOPIC

MEMBER = textwrap.dedent(
    """
    import sys, time
    from goshop_common.messaging.kafka import make_consumer
    consumer = make_consumer(sys.argv[1], sys.argv[2], [sys.argv[3]])
    deadline = time.monotonic() + 60
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(timeout_ms=200)
    print("assigned", flush=True)
    while True:
        consumer.poll(timeout_ms=200)
    """
)


def test_a_new_member_gets_partitions_after_the_old_one_was_killed(kafka_broker):
    group = f"test-killed-{uuid.uuid4().hex[:8]}"
    member = subprocess.Popen(
        [sys.executable, "-c", MEMBER, kafka_broker.bootstrap, group, ORDERS_TOPIC],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert member.stdout.readline().strip() == "assigned"
    finally:
        os.killpg(member.pid, signal.SIGKILL)  # dies without leaving the group
        member.wait()

    successor = make_consumer(kafka_broker.bootstrap, group, [ORDERS_TOPIC])
    try:
        deadline = time.monotonic() + 45
        while not successor.assignment() and time.monotonic() < deadline:
            successor.poll(timeout_ms=200)
        assert len(successor.assignment()) == 3
    finally:
        successor.close(autocommit=False)
