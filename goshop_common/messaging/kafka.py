"""goshop's kafka-python settings, in one place.

Every service builds its producers and consumers here so that the choices
below (and the reasons for them) are made once. Keys and values are bytes:
no serializers, callers encode. The defaults are what Apache Kafka wants;
some choices exist because of measured behaviour of kafka-python 3.0 (see
the docstrings). A development broker that needs other options gets them
from a profile (goshop_common.messaging.broker_profiles), which the
environment selects with ``GOSHOP_KAFKA_BROKER_PROFILE``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaTimeoutError, TopicAlreadyExistsError

from goshop_common.messaging import broker_profiles

log = logging.getLogger("goshop.kafka")

# What _construct builds: a kafka-python client (untyped: Any to mypy).
_Client = TypeVar("_Client")

PARTITIONS = 3

# A down or frozen broker must fail a send within seconds, not the client's
# 30-120 s defaults, so a relay loop notices and backs off.
REQUEST_TIMEOUT_MS = 4000
MAX_BLOCK_MS = 4000
DELIVERY_TIMEOUT_MS = 8000
# kafka-python's reconnect backoff grows to 30 s while a broker is down, which
# keeps a client idle for that long after the broker is back.
RECONNECT_BACKOFF_MAX_MS = 1000

PRODUCER_DEFAULTS: dict[str, Any] = {
    # Idempotent: a send retried after a lost acknowledgement writes no second
    # copy, and a partition keeps its order with several requests in flight
    # (kafka-python 3.0 sends one batch per partition at a time when
    # idempotent). Given explicitly, so that an override conflicting with it
    # (acks other than all, retries=0, more than 5 in flight) raises instead
    # of quietly turning it off. Retries are kafka-python's default: as many as
    # delivery_timeout_ms allows.
    "enable_idempotence": True,
    "acks": "all",
    "linger_ms": 5,
    "max_in_flight_requests_per_connection": 5,
    # Topics are created by ensure_topics with PARTITIONS partitions; an
    # auto-created topic would get the broker's default count instead.
    "allow_auto_create_topics": False,
    "max_block_ms": MAX_BLOCK_MS,
    "request_timeout_ms": REQUEST_TIMEOUT_MS,
    "delivery_timeout_ms": DELIVERY_TIMEOUT_MS,
    # The constructor connects eagerly (to learn the broker version).
    "bootstrap_timeout_ms": MAX_BLOCK_MS,
    "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
    # kafka-python's own client metrics (consumer.metrics(), producer.metrics()):
    # nothing reads them (goshop's are Prometheus series), and their sensors
    # are recorded on every socket read and write.
    "metrics_enabled": False,
}

CONSUMER_DEFAULTS: dict[str, Any] = {
    # Offsets are committed after the database commit (inbox), never before.
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    # Also the rebalance timeout: how long a rebalance waits for a member
    # that is busy between polls: long enough to apply and commit a batch of
    # max_poll_records, short enough that a stuck member is replaced soon.
    "max_poll_interval_ms": 10000,
    # A dead member is noticed this soon; 6 s is the shortest Apache Kafka
    # accepts by default (the broker's group.min.session.timeout.ms).
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 2000,
    # Kafka's default: the broker answers a waiting fetch as soon as a record
    # arrives, so the wait costs no latency, and it spaces an idle consumer's
    # fetches. goshop's event consumers wait for the outboxer's ring instead
    # and fetch with a short wait (goshop_common.messaging.consumer.build_consumer).
    "fetch_max_wait_ms": 500,
    "max_poll_records": 200,
    "allow_auto_create_topics": False,
    # Longer than max_poll_interval_ms, the rebalance timeout, which a
    # JoinGroup may legitimately wait out for a member that died without
    # leaving (kafka-python's own default is far longer for that reason).
    # It also bounds a synchronous commit() against a down broker.
    "request_timeout_ms": 15000,
    "bootstrap_timeout_ms": 5000,
    "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
    # As the producer's (PRODUCER_DEFAULTS).
    "metrics_enabled": False,
}

# How long a group may take to form again around a new member when one died
# without leaving: its session expires, then the join waits out the
# rebalance timeout for members busy between polls.
GROUP_FORMS_WITHIN_SECONDS: float = (
    CONSUMER_DEFAULTS["session_timeout_ms"] + CONSUMER_DEFAULTS["max_poll_interval_ms"]
) / 1000


def broker_profile(environ: Mapping[str, str] | None = None) -> str:
    """The broker profile ``GOSHOP_KAFKA_BROKER_PROFILE`` names (``kafka``
    unless set), read at each client built. ValueError for an unknown name,
    or for any profile but ``kafka`` when ``GOSHOP_ENV`` is production: its
    options are for a development broker and weaken what Apache Kafka gives
    (goshop_common.messaging.broker_profiles)."""
    environ = os.environ if environ is None else environ
    profile = (environ.get("GOSHOP_KAFKA_BROKER_PROFILE") or broker_profiles.KAFKA).strip()
    if profile not in broker_profiles.PROFILES:
        raise ValueError(
            f"GOSHOP_KAFKA_BROKER_PROFILE must be one of {', '.join(broker_profiles.PROFILES)}; got {profile!r}"
        )
    if profile != broker_profiles.KAFKA and (environ.get("GOSHOP_ENV") or "").strip() == "production":
        raise ValueError(f"GOSHOP_KAFKA_BROKER_PROFILE={profile} is for a development broker; production refuses it")
    return profile


def producer_config(**overrides: Any) -> dict[str, Any]:
    """PRODUCER_DEFAULTS, the broker profile's options over them, ``overrides`` over those."""
    return {**PRODUCER_DEFAULTS, **broker_profiles.PRODUCER_OVERRIDES[broker_profile()], **overrides}


def consumer_config(**overrides: Any) -> dict[str, Any]:
    """CONSUMER_DEFAULTS, the broker profile's options over them, ``overrides`` over those."""
    return {**CONSUMER_DEFAULTS, **broker_profiles.CONSUMER_OVERRIDES[broker_profile()], **overrides}


def _construct(cls: type[_Client], *args: Any, **config: Any) -> _Client:
    """kafka-python's consumer and admin client start an IO thread before
    they connect; when connecting fails the constructor raises and the thread
    (and its sockets) are never stopped. Build the object so it can be torn
    down on that path."""
    obj = cls.__new__(cls)
    try:
        cls.__init__(obj, *args, **config)
    except BaseException:
        client = getattr(obj, "_client", None)
        if client is not None:
            try:
                client.close()
            except Exception:
                log.debug("closing a half-built %s failed", cls.__name__, exc_info=True)
        raise
    return obj


def make_producer(bootstrap: str, **overrides: Any) -> KafkaProducer:
    """Raises KafkaTimeoutError after ``bootstrap_timeout_ms`` when the broker
    cannot be reached. ``send()`` blocks at most ``max_block_ms`` (metadata for
    a topic not yet seen), and its future fails at most
    ``delivery_timeout_ms`` after the send."""
    return KafkaProducer(bootstrap_servers=bootstrap, **producer_config(**overrides))


def make_consumer(bootstrap: str, group_id: str, topics: Iterable[str], **overrides: Any) -> KafkaConsumer:
    """A group member subscribed to ``topics``.

    The group join completes inside ``poll()`` (seconds: a broker holds a
    join to gather the group's members), and that same ``poll()`` may already
    return records: process every batch, do not wait for ``assignment()``
    and then discard what came with it."""
    config = consumer_config(**overrides)
    return _construct(KafkaConsumer, *topics, bootstrap_servers=bootstrap, group_id=group_id, **config)


def make_reader(bootstrap: str, **overrides: Any) -> KafkaConsumer:
    """A consumer in no group, to ``assign`` and ``seek``: it commits nothing
    and disturbs no group's members (goshop_common.messaging.deadletters)."""
    limits = {key: CONSUMER_DEFAULTS[key] for key in ("request_timeout_ms", "bootstrap_timeout_ms")}
    # Asking a topic's partitions must never create it (with the broker's default count).
    config = {**limits, "allow_auto_create_topics": False, "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS}
    config.update(broker_profiles.CONSUMER_OVERRIDES[broker_profile()])
    config.update(overrides)
    return _construct(KafkaConsumer, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **config)


def _admin(bootstrap: str, timeout: float) -> KafkaAdminClient:
    timeout_ms = max(int(timeout * 1000), 1000)
    return _construct(
        KafkaAdminClient,
        bootstrap_servers=bootstrap,
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=min(timeout_ms, 10000),
        reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
    )


def _partition_counts(admin: KafkaAdminClient, topics: Sequence[str]) -> dict[str, int]:
    """Topics that exist with every partition led, and how many partitions."""
    counts = {}
    for info in admin.describe_topics(list(topics)):
        partitions = info.get("partitions") or []
        ready = all(p.get("error_code", 0) == 0 and p.get("leader_id", -1) >= 0 for p in partitions)
        if info.get("error_code", 0) == 0 and partitions and ready:
            counts[info["name"]] = len(partitions)
    return counts


def ensure_topics(
    bootstrap: str,
    topics: Sequence[str],
    partitions: int = PARTITIONS,
    timeout: float = 30,
) -> None:
    """Create ``topics`` (the domain's: goshop_domain.events.ALL_TOPICS) where
    missing and wait until metadata shows each
    with its partitions. Safe to run concurrently and repeatedly.

    Raises RuntimeError if a topic exists with another partition count (a
    topic a client auto-created gets the broker's default count, whatever
    the client asks), KafkaTimeoutError if the broker or the topics are not
    ready within ``timeout`` seconds."""
    topics = list(topics)
    deadline = time.monotonic() + timeout
    admin = _admin(bootstrap, timeout)
    try:
        missing = [t for t in topics if t not in _partition_counts(admin, topics)]
        if missing:
            # -1: the broker's default.replication.factor.
            spec = {t: {"num_partitions": partitions, "replication_factor": -1} for t in missing}
            # Another process may create some of them meanwhile.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(spec, timeout_ms=max(int(timeout * 1000), 1000))
        while True:
            counts = _partition_counts(admin, topics)
            wrong = {t: n for t, n in counts.items() if n != partitions}
            if wrong:
                raise RuntimeError(f"topics exist with a partition count other than {partitions}: {wrong}")
            if len(counts) == len(topics):
                return
            if time.monotonic() >= deadline:
                pending = sorted(set(topics) - set(counts))
                raise KafkaTimeoutError(f"topics not ready after {timeout}s: {pending}")
            time.sleep(0.1)
    finally:
        admin.close()


def _metadata_request(correlation_id: int) -> bytes:
    """MetadataRequest v4 for no topics (every broker from Kafka 1.0 to 4.x
    answers v4), framed, with a v1 request header."""
    client_id = b"goshop-ready"
    body = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    body += struct.pack(">ib", 0, 0)  # topics: [], allow_auto_topic_creation: false
    return struct.pack(">i", len(body)) + body


def _recv_exactly(sock: socket.socket, size: int, deadline: float) -> bytes:
    data = bytearray()
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed by the broker")
        data += chunk
    return bytes(data)


def _answers_metadata(host: str, port: int, deadline: float) -> bool:
    correlation_id = int.from_bytes(uuid.uuid4().bytes[:4], "big") & 0x7FFFFFFF
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    with socket.create_connection((host, port), timeout=remaining) as sock:
        sock.sendall(_metadata_request(correlation_id))
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4, deadline))
        if not 4 <= size <= 10_000_000:
            return False
        response = _recv_exactly(sock, size, deadline)
    (answered,) = struct.unpack(">i", response[:4])
    return bool(answered == correlation_id)


def _split_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    servers = []
    for server in bootstrap.split(","):
        server = server.strip()
        if "://" in server:
            server = server.split("://", 1)[1]
        host, _, port = server.rpartition(":")
        servers.append((host.strip("[]") or "localhost", int(port)))
    return servers


def broker_reachable(bootstrap: str, timeout: float = 2.0) -> bool:
    """True if a bootstrap server answers a Kafka metadata request within
    ``timeout`` seconds in all. For ``/ready``: never raises, never blocks
    longer than the timeout (a frozen broker accepts TCP connections and then
    says nothing), and starts no threads. A kafka-python client is not used
    here: it logs every refused connection at ERROR and leaks its IO thread
    when it cannot connect."""
    deadline = time.monotonic() + timeout
    try:
        servers = _split_bootstrap(bootstrap)
    except ValueError:
        return False
    for host, port in servers:
        try:
            if _answers_metadata(host, port, deadline):
                return True
        except Exception as exc:
            log.debug("broker %s:%s not reachable: %r", host, port, exc)
    return False
