"""Request schemas of the ops API."""

from __future__ import annotations

import colander

from goshop_common.schemas import StrictString, strict_string_node

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
    )

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
