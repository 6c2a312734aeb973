"""Request schemas of the ops API."""

from __future__ import annotations

from typing import ClassVar

import colander

from goshop_common.web.openapi import RETRY_AFTER, SERVICE_UNAVAILABLE, Reply, error
from goshop_common.web.schemas import StrictString, body, field, list_of, strict_string_node
from goshop_domain.events import DEAD_LETTER_TOPICS
from goshop_domain.orders import order_body
from goshop_orders.read_contract import ORDER_STATUSES as STATUSES

QUESTION_MAX_LENGTH = 2000


class ExplainSchema(colander.MappingSchema):
    """``{"question": "..."}``, or an empty body for "why is it in this state?"."""

    component: ClassVar[str] = "Question"

    question = strict_string_node(
        "question",
        f"question must be a string of at most {QUESTION_MAX_LENGTH} characters",
        missing=None,
        validator=colander.Length(
            max=QUESTION_MAX_LENGTH,
            max_err=f"question must be a string of at most {QUESTION_MAX_LENGTH} characters",
        ),
        json_schema={"nullable": True},
    )
    # The validator below, in the document's words.
    json_schema: ClassVar[dict] = {"additionalProperties": False}

    @staticmethod
    def schema_type(**kw):
        # Unknown keys kept, so that ``validator`` can refuse them: a misspelt
        # key ({"q": ...}) would otherwise be answered as if no question had
        # been asked. (``unknown="raise"`` would echo the client's input back.)
        return colander.Mapping(unknown="preserve")

    def validator(self, node, value):
        allowed = {child.name for child in node.children}
        if any(key not in allowed for key in value):
            raise colander.Invalid(node, f"unknown field: only {', '.join(sorted(allowed))} is accepted")


# --- Responses, for the OpenAPI document -------------------------------------

ORDER_ID = colander.SchemaNode(StrictString(), name="id", json_schema={"format": "uuid"})


def _timeline() -> colander.SchemaNode:
    entry = body(
        "entry",
        field("at", format="date-time"),
        field("source", enum=["orders", "payments", "outboxer"]),
        field("event"),
        body("detail"),
        # Only for a step the shop traced: the trace id to open in the trace backend.
        colander.SchemaNode(
            StrictString(), name="trace_id", missing=colander.drop, json_schema={"pattern": "^[0-9a-f]{32}$"}
        ),
        component="TimelineEntry",
    )
    return body(
        "timeline",
        order_body(STATUSES),
        list_of("entries", entry),
        field("markdown", description="The same timeline as a Markdown table (also at timeline.md)."),
        component="Timeline",
    )


NOT_FOUND = error("order not found")
TIMELINE = {
    200: Reply("The order's saga in time order.", _timeline()),
    404: NOT_FOUND,
    503: SERVICE_UNAVAILABLE,
}
# Its own path, one media type: a generated client reads a 200 by its one
# declared type, and cannot choose between two by a query parameter.
TIMELINE_MARKDOWN = {
    200: Reply("The order's saga as a Markdown table.", media_types={"text/markdown": {"type": "string"}}),
    404: NOT_FOUND,
    503: SERVICE_UNAVAILABLE,
}
EXPLAIN = {
    200: Reply(
        "An answer, and the timeline it explains.",
        body(
            "explanation",
            field("answer"),
            field("source", enum=["rules", "ollama"]),
            colander.SchemaNode(colander.String(), name="model", missing=colander.drop),
            _timeline(),
            component="Explanation",
        ),
    ),
    404: NOT_FOUND,
    502: Reply(
        "llm unavailable: the facts, without the explanation.",
        body(
            "llm_unavailable",
            field("error", enum=["llm unavailable"]),
            field("reason"),
            _timeline(),
            component="ExplanationUnavailable",
        ),
    ),
    503: SERVICE_UNAVAILABLE,
}


# --- Parked events (goshop_common.messaging.deadletters) ----------------------

DLQ_TOPIC = colander.SchemaNode(StrictString(), name="dlq_topic", json_schema={"enum": list(DEAD_LETTER_TOPICS)})
DLQ_PARTITION = colander.SchemaNode(colander.Integer(), name="partition", json_schema={"minimum": 0})
DLQ_OFFSET = colander.SchemaNode(colander.Integer(), name="offset", json_schema={"minimum": 0})


def _nullable(name: str, typ=None) -> colander.SchemaNode:
    return field(name, typ, nullable=True)


def _parked(name: str = "parked_event") -> colander.SchemaNode:
    return body(
        name,
        field("dlq_topic", enum=list(DEAD_LETTER_TOPICS)),
        field("dlq_partition", colander.Integer()),
        field("dlq_offset", colander.Integer()),
        field("consumer"),
        field("topic"),
        field("partition", colander.Integer()),
        field("offset", colander.Integer()),
        field("reason"),
        field("error"),
        _nullable("parked_at"),
        _nullable("event_id"),
        _nullable("event_type"),
        _nullable("replay_of"),
        field("copies", colander.Integer()),
        field("replayed", colander.Boolean()),
        list_of("replayed_at", field("at")),
        component="ParkedEvent",
    )


PARKED_NOT_FOUND = error("parked event not found")
ALREADY_REPLAYED = error("already replayed: its last replay has not failed; a replay that fails again is listed again")
BROKER_UNAVAILABLE = error("broker unavailable: the dead-letter topics could not be read or written", RETRY_AFTER)
PARKED = {
    200: Reply(
        "Every parked event, oldest first per dead-letter partition; one entry for a record parked more than once.",
        body("parked_events", list_of("parked", _parked()), component="ParkedEventList"),
    ),
    503: BROKER_UNAVAILABLE,
}
REPLAY = {
    202: Reply(
        "Put back on its topic for the consumer that parked it, which applies it through its inbox (once).",
        body(
            "replay",
            _parked("parked"),
            body(
                "replayed_to",
                field("topic"),
                field("partition", colander.Integer()),
                field("offset", colander.Integer()),
                component="ReplayedTo",
            ),
            component="Replay",
        ),
    ),
    404: PARKED_NOT_FOUND,
    409: ALREADY_REPLAYED,
    503: BROKER_UNAVAILABLE,
}
