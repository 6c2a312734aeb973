"""make run's broker (Tansu, ``memory://`` storage) as its log grows: its CPU
per message in the last of several rounds, against the first round's.

    .venv/bin/python bench/bench_broker.py    # ~1 min

The saga's traffic in miniature: each message produced on its own (acks=all,
flushed: one batch each, as the outboxer's small batches are at a few dozen
checkouts a second) to a 3-partition topic, and consumed by a group member
that commits after each poll, as the consumers do. Each round is ROUND
messages; the broker's utime+stime from /proc over each round, per message.
``bench_capacity``'s 5-minute holds put tens of thousands of messages in the
log; a figure that grows round after round is a cost per message that grows
with what the broker holds, which make run's shop pays on every order.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent))

import _harness as h  # noqa: E402
import bench_shop as sb  # noqa: E402

from goshop_common.messaging import broker_profiles  # noqa: E402
from goshop_common.messaging.kafka import ensure_topics, make_consumer, make_producer  # noqa: E402
from goshop_devtools.broker import start_on_free_port  # noqa: E402

ROUND = 1000
ROUNDS = 6
TOPIC = "bench.broker"
PAYLOAD = b'{"event": "order.created", "padding": "' + b"x" * 300 + b'"}'


def one_round(producer, consumer, broker_pid: int) -> float:
    """ROUND messages produced and consumed one by one; the broker's CPU seconds per message."""
    before = sb.process_cpu(broker_pid)
    for index in range(ROUND):
        producer.send(TOPIC, key=str(index % 50).encode(), value=PAYLOAD).get(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=200)
            if records:
                consumer.commit()
                break
    return (sb.process_cpu(broker_pid) - before) / ROUND


def main() -> int:
    os.environ["GOSHOP_KAFKA_BROKER_PROFILE"] = broker_profiles.TANSU
    print(h.background_load(1.0), flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="goshop-bench-broker-"))
    broker = start_on_free_port(scratch)
    try:
        assert broker.pid is not None
        ensure_topics(broker.bootstrap, topics=[TOPIC])
        producer = make_producer(broker.bootstrap)
        consumer = make_consumer(broker.bootstrap, "bench-broker", [TOPIC], enable_auto_commit=False)
        try:
            consumer.poll(timeout_ms=2000)  # the group join
            per_message = []
            for number in range(1, ROUNDS + 1):
                per_message.append(one_round(producer, consumer, broker.pid))
                print(
                    f"round {number}: {number * ROUND} messages in the log, broker {per_message[-1] * 1e6:.0f} µs "
                    "CPU/message",
                    flush=True,
                )
        finally:
            producer.close(timeout=5)
            consumer.close()
    finally:
        broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    h.report(
        f"Tansu CPU per message, log at {ROUNDS * ROUND}",
        per_message[-1] * 1e6,
        "µs",
        f"the same, log at {ROUND}",
        per_message[0] * 1e6,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
