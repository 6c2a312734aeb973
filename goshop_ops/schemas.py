"""Request schemas of the ops API."""

from __future__ import annotations

from typing import ClassVar

import colander

from goshop_common.web.openapi import SERVICE_UNAVAILABLE, Reply, error
from goshop_common.web.schemas import StrictString, body, field, list_of, order_body, strict_string_node
from goshop_orders.read_contract import ORDER_STATUSES as STATUSES

QUESTION_MAX_LENGTH = 2000
FORMATS = ("json", "markdown")


class TimelineQuery(colander.MappingSchema):
    format = colander.SchemaNode(
        StrictString(),
        missing="json",
        validator=colander.OneOf(FORMATS, msg_err="format must be json or markdown"),
    )


class ExplainSchema(colander.MappingSchema):
    """``{"question": "..."}``, or an empty body for "why is it in this state?"."""

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
    )
    return body("timeline", order_body(STATUSES), list_of("entries", entry), field("markdown"))


NOT_FOUND = error("order not found")
TIMELINE = {
    200: Reply(
        "The order's saga in time order: JSON, or with ?format=markdown the same as a Markdown table.",
        _timeline(),
        media_types={"text/markdown": {"type": "string"}},
    ),
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
        ),
    ),
    404: NOT_FOUND,
    502: Reply(
        "llm unavailable: the facts, without the explanation.",
        body("llm_unavailable", field("error", enum=["llm unavailable"]), field("reason"), _timeline()),
    ),
    503: SERVICE_UNAVAILABLE,
}
