"""Each fault alone while a burst of checkouts flows, then all of them in one
burst; after the last one, everything conftest.verify asserts.

The faults (conftest.Faults): SIGKILL of a member of each consumer group and
of an outboxer; the broker frozen (SIGSTOP) for twice the consumers' session
timeout; PostgreSQL restarted (``pg_ctl restart -m fast``); packets to and
from the broker dropped for 20 s, then those to and from PostgreSQL for 20 s.
"""

from __future__ import annotations

import time

from tests.chaos.conftest import Burst, Faults, verify


def test_a_killed_member_of_each_group_and_a_killed_outboxer(ready_shop):
    faults = Faults(ready_shop)
    burst = Burst(ready_shop, "kill", count=500, seconds=20).start()
    burst.wait_placed(200)
    faults.kill_group_members()
    verify(ready_shop, burst, faults, "SIGKILL of a consumer of each group and an outboxer")


def test_the_broker_frozen_for_twice_the_session_timeout(ready_shop):
    faults = Faults(ready_shop)
    burst = Burst(ready_shop, "freeze", count=500, seconds=20).start()
    burst.wait_placed(80)
    faults.freeze_broker()
    verify(ready_shop, burst, faults, "broker frozen for 12 s")


def test_postgres_restarted(ready_shop):
    faults = Faults(ready_shop)
    burst = Burst(ready_shop, "pg-restart", count=500, seconds=15).start()
    burst.wait_placed(150)
    faults.restart_postgres()
    verify(ready_shop, burst, faults, "PostgreSQL restarted")


def test_a_partition_from_the_broker_then_from_postgres(ready_shop, can_partition):
    faults = Faults(ready_shop)
    burst = Burst(ready_shop, "partition", count=500, seconds=48).start()
    burst.wait_placed(50)
    faults.partition_broker_then_database()
    verify(ready_shop, burst, faults, "broker partitioned 20 s, then PostgreSQL 20 s")


def test_every_fault_in_one_burst(ready_shop, can_partition):
    faults = Faults(ready_shop)
    burst = Burst(ready_shop, "all", count=700, seconds=70).start()
    burst.wait_placed(50)
    faults.kill_group_members()
    time.sleep(3)
    faults.freeze_broker()
    faults.restart_postgres()
    faults.partition_broker_then_database()
    verify(ready_shop, burst, faults, "every fault in one burst")
