"""The ops API: an order's timeline, and an explanation of it.

Both need the operator's token (goshop_ops.operators). Neither writes: the
timeline is read in a short read-only transaction of its own, so no
connection is held while an LLM thinks.
"""

from __future__ import annotations

import logging

from pyramid.response import Response

from goshop_common.db.session import SESSION_ENVIRON_KEY
from goshop_common.web.errors import ApiError
from goshop_common.web.openapi import OPERATOR
from goshop_common.web.responses import json_response
from goshop_common.web.rest import Service, body_validator, querystring_validator
from goshop_ops.explain import LlmUnavailable
from goshop_ops.operators import require_operator
from goshop_ops.schemas import EXPLAIN, ORDER_ID, TIMELINE, ExplainSchema, TimelineQuery
from goshop_ops.timeline import OrderTimeline, Timeline, parse_order_id

log = logging.getLogger("goshop.ops")

NOT_FOUND = "order not found"

timeline = Service(
    name="ops_order_timeline",
    path="/v1/ops/orders/{id}/timeline",
    description="An order's saga, in time order (operators only).",
)
explain = Service(
    name="ops_order_explain",
    path="/v1/ops/orders/{id}/explain",
    description="Why an order is where it is, in plain words (operators only).",
)
# It answers once the LLM has: the gateway waits that much longer for it
# (goshop_gateway.routes.Route.waits_for_llm).
explain.waits_for_llm = True


def _read_timeline(request) -> OrderTimeline:
    order_id = parse_order_id(request.matchdict["id"])
    if order_id is None:
        raise ApiError(404, NOT_FOUND)
    injected = request.environ.get(SESSION_ENVIRON_KEY)
    if injected is not None:
        found = Timeline(injected).for_order(order_id)
    else:
        # One snapshot for every table (REPEATABLE READ), so the saga moving
        # on between two queries cannot show a half-step; read-only, so the
        # database enforces that ops never writes.
        with request.registry.dbsession_factory() as db, db.begin():
            db.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
            found = Timeline(db).for_order(order_id)
    if found is None:
        raise ApiError(404, NOT_FOUND)
    return found


@timeline.get(
    schema=TimelineQuery(),
    validators=(require_operator, querystring_validator),
    auth=OPERATOR,
    path=(ORDER_ID,),
    responses=TIMELINE,
)
def timeline_view(request):
    found = _read_timeline(request)
    if request.validated["format"] == "markdown":
        return Response(text=found.markdown(), content_type="text/markdown", charset="utf-8")
    return found.as_json()


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
