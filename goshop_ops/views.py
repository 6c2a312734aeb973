"""The ops API: an order's timeline, and an explanation of it; the events
consumers parked, and their replay.

Every route needs the operator's token (goshop_ops.operators). None writes to
the database: the timeline is read in a short read-only transaction of its
own, so no connection is held while an LLM thinks. Parked events are read
from, and replayed through, the broker (goshop_common.messaging.deadletters).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator

from kafka.errors import KafkaError
from pyramid.response import Response
from sqlalchemy.orm import Session

from goshop_common.db.session import SESSION_ENVIRON_KEY
from goshop_common.messaging import deadletters
from goshop_common.messaging.kafka import make_producer
from goshop_common.web.errors import ApiError
from goshop_common.web.openapi import OPERATOR
from goshop_common.web.responses import json_response
from goshop_common.web.rest import Service, Tag, body_validator
from goshop_domain.events import DEAD_LETTER_TOPICS
from goshop_ops.explain import LlmUnavailable
from goshop_ops.operators import require_operator
from goshop_ops.schemas import (
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_TOPIC,
    EXPLAIN,
    ORDER_ID,
    PARKED,
    REPLAY,
    TIMELINE,
    TIMELINE_MARKDOWN,
    ExplainSchema,
)
from goshop_ops.timeline import OrderTimeline, Timeline, parse_order_id

log = logging.getLogger("goshop.ops")

NOT_FOUND = "order not found"

OPS = Tag("ops", "For operators: an order's saga and why it is where it is; events the consumers parked, replayed.")
timeline = Service(
    name="ops_order_timeline",
    path="/v1/ops/orders/{id}/timeline",
    description="An order's saga, in time order (operators only).",
    tag=OPS,
)
timeline_markdown = Service(
    name="ops_order_timeline_markdown",
    path="/v1/ops/orders/{id}/timeline.md",
    description="An order's saga as a Markdown table (operators only).",
    tag=OPS,
)
explain = Service(
    name="ops_order_explain",
    path="/v1/ops/orders/{id}/explain",
    description="Why an order is where it is, in plain words (operators only).",
    tag=OPS,
)
# It answers once the LLM has: the gateway waits that much longer for it
# (goshop_gateway.routes.Route.waits_for_llm).
explain.waits_for_llm = True


@contextlib.contextmanager
def reading(request) -> Iterator[Session]:
    """A database session for one consistent read: the test's own through the
    seam, else one snapshot of every table (REPEATABLE READ), so the saga
    moving on between two queries cannot show a half-step; read-only, so the
    database enforces that ops never writes."""
    injected = request.environ.get(SESSION_ENVIRON_KEY)
    if injected is not None:
        yield injected
        return
    with request.registry.dbsession_factory() as db, db.begin():
        db.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
        yield db


def find_timeline(request, order_id: uuid.UUID) -> OrderTimeline | None:
    """``order_id``'s timeline, or None: the JSON API's and the console's one read."""
    with reading(request) as db:
        return Timeline(db).for_order(order_id)


def _read_timeline(request) -> OrderTimeline:
    order_id = parse_order_id(request.matchdict["id"])
    found = find_timeline(request, order_id) if order_id is not None else None
    if found is None:
        raise ApiError(404, NOT_FOUND)
    return found


@timeline.get(validators=(require_operator,), auth=OPERATOR, path=(ORDER_ID,), responses=TIMELINE)
def timeline_view(request):
    return _read_timeline(request).as_json()


@timeline_markdown.get(validators=(require_operator,), auth=OPERATOR, path=(ORDER_ID,), responses=TIMELINE_MARKDOWN)
def timeline_markdown_view(request):
    return Response(text=_read_timeline(request).markdown(), content_type="text/markdown", charset="utf-8")


@explain.post(
    schema=ExplainSchema(),
    validators=(require_operator, body_validator),
    auth=OPERATOR,
    path=(ORDER_ID,),
    responses=EXPLAIN,
)
def explain_view(request):
    found = _read_timeline(request)
    explainer = request.registry.ops_explainer
    try:
        answer = explainer.explain(found, request.validated.get("question"))
    except LlmUnavailable as exc:
        log.warning("llm unavailable: %s", exc, extra={"order_id": found.order["id"]})
        # The operator still gets the facts the LLM was to explain.
        return json_response({"error": "llm unavailable", "reason": str(exc), "timeline": found.as_json()}, 502)
    body = {"answer": answer.text, "source": answer.source}
    if answer.model:
        body["model"] = answer.model
    body["timeline"] = found.as_json()
    return body


# --- Parked events ----------------------------------------------------------

parked = Service(
    name="ops_parked_events",
    path="/v1/ops/parked",
    description="Events the consumers parked on the dead-letter topics (operators only).",
    tag=OPS,
)
replay = Service(
    name="ops_parked_event_replay",
    path="/v1/ops/parked/{dlq_topic}/{partition}/{offset}/replay",
    description="Put a parked event back for the consumer that parked it (operators only).",
    tag=OPS,
)

PARKED_NOT_FOUND = "parked event not found"
ALREADY_REPLAYED = "already replayed: its last replay has not failed"
# Under the gateway's upstream read timeout (10 s), so that a broker that
# does not answer is ops' 503, not the gateway's 504.
BROKER_TIMEOUT_SECONDS = 5.0


def _is_number(text: str) -> bool:
    # ASCII digits only: str.isdigit() is also true of "٣" and "²".
    return text.isascii() and text.isdigit()


def _broker_unavailable(exc: KafkaError) -> ApiError:
    log.warning("broker unavailable", extra={"error": exc.__class__.__name__})
    return ApiError(503, "broker unavailable", headers={"Retry-After": "5"})


def list_parked(request) -> list[deadletters.ParkedEvent]:
    """Every parked event on the dead-letter topics; a 503 when the broker does not answer."""
    bootstrap = request.registry.goshop_settings.kafka_bootstrap
    try:
        return deadletters.read_parked(bootstrap, DEAD_LETTER_TOPICS, timeout=BROKER_TIMEOUT_SECONDS)
    except KafkaError as exc:
        raise _broker_unavailable(exc) from None


@parked.get(validators=(require_operator,), auth=OPERATOR, responses=PARKED)
def parked_view(request):
    return {"parked": [entry.as_json() for entry in list_parked(request)]}


def find_parked(request, topic: str, partition: str, offset: str) -> deadletters.ParkedEvent:
    """The event parked at ``partition``/``offset`` of the dead-letter topic
    ``topic`` (as a URL gives them); a 404 ApiError when nothing is, a 503
    when the broker does not answer."""
    if topic not in DEAD_LETTER_TOPICS or not all(_is_number(n) for n in (partition, offset)):
        raise ApiError(404, PARKED_NOT_FOUND)
    bootstrap = request.registry.goshop_settings.kafka_bootstrap
    try:
        return deadletters.find_parked(bootstrap, topic, int(partition), int(offset), timeout=BROKER_TIMEOUT_SECONDS)
    except deadletters.NotParked:
        raise ApiError(404, PARKED_NOT_FOUND) from None
    except KafkaError as exc:
        raise _broker_unavailable(exc) from None


def replay_parked(request, topic: str, partition: str, offset: str) -> deadletters.Replay:
    """The one ops action with an effect: a record produced to the broker. It
    is not a state change of ops (which owns no table) that an outbox would
    keep atomic with one; it returns once the broker has the copy and the
    marker, and the consumer's inbox makes a repeated replay a no-op. One
    whose last replay is out and has not failed again is a 409 ApiError, and
    nothing is sent; nothing parked at that place is a 404."""
    entry = find_parked(request, topic, partition, offset)
    try:
        producer = make_producer(request.registry.goshop_settings.kafka_bootstrap)
        try:
            done = deadletters.replay(producer, entry, timeout=BROKER_TIMEOUT_SECONDS)
        finally:
            producer.close(timeout=2)
    except deadletters.AlreadyReplayed:
        raise ApiError(409, ALREADY_REPLAYED) from None
    except KafkaError as exc:
        raise _broker_unavailable(exc) from None
    log.info(
        "parked event replayed",
        extra={
            "event_id": entry.event_id,
            "consumer": entry.consumer,
            "dlq_topic": topic,
            "dlq_partition": entry.dlq_partition,
            "dlq_offset": entry.dlq_offset,
        },
    )
    return done


@replay.post(
    validators=(require_operator,), auth=OPERATOR, path=(DLQ_TOPIC, DLQ_PARTITION, DLQ_OFFSET), responses=REPLAY
)
def replay_view(request):
    topic, partition, offset = (request.matchdict[name] for name in ("dlq_topic", "partition", "offset"))
    return json_response(replay_parked(request, topic, partition, offset).as_json(), 202)
