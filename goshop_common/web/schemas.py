"""Colander types and nodes shared by the services' request schemas.

Colander's own ``String`` turns ``123`` or ``{}`` into a string; an API that
accepts that hides client bugs, so goshop's strings are strict.

Every rule a node enforces is also what the OpenAPI document says about it
(goshop_common.web.openapi): colander's ``Length``, ``Range`` and ``OneOf`` are
read as they are, and goshop's own validators carry a ``json_schema``.
"""

from __future__ import annotations

import re
from typing import Any

import colander

# RFC 5321 caps a forward path at 254 characters.
EMAIL_MAX_LENGTH = 254
# What normalise_email trims: ASCII whitespace only, so that the documented
# pattern (which has no Unicode-aware \s) says exactly what is accepted.
_ASCII_WHITESPACE = " \t\n\r\f\v"
# A UUID as RFC 9562 writes it (uuid.UUID would also take braces, URNs, no dashes).
UUID_REGEX = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


class Pattern:
    """A colander validator: the whole value matches ``regex``.

    ``re.fullmatch``, not colander's ``Regex`` (``re.match``, where ``$``
    also matches before a trailing newline). ``regex`` uses only syntax that
    means the same in ECMA-262, the dialect of JSON Schema's ``pattern``."""

    def __init__(self, regex: str, msg: str):
        self.regex = regex
        self.msg = msg
        self._compiled = re.compile(regex)
        # Anchored: JSON Schema's ``pattern`` matches anywhere in the value,
        # and the group keeps an alternation inside the anchors.
        self.json_schema: dict[str, object] = {"pattern": f"^(?:{regex})$"}

    def __call__(self, node: colander.SchemaNode, value: str) -> None:
        if not self._compiled.fullmatch(value):
            raise colander.Invalid(node, self.msg)


class StrictString(colander.String):
    """A JSON string and nothing else (no numbers, booleans, objects), without
    NUL and without lone surrogates."""

    def deserialize(self, node: colander.SchemaNode, cstruct: object) -> Any:
        if cstruct is colander.null or cstruct is None:
            return colander.null
        if not isinstance(cstruct, str):
            # A node's ``type_error_msg`` (strict_string_node) is its one message.
            raise colander.Invalid(node, getattr(node, "type_error_msg", "must be a string"))
        if "\x00" in cstruct:
            # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the driver.
            raise colander.Invalid(node, getattr(node, "type_error_msg", "must be a string"))
        try:
            # JSON may spell a lone surrogate ("\ud800"), which is no character:
            # it cannot be stored, hashed or logged as UTF-8.
            cstruct.encode("utf-8")
        except UnicodeEncodeError:
            raise colander.Invalid(node, getattr(node, "type_error_msg", "must be a string")) from None
        return cstruct


class QueryInteger(colander.Integer):
    """An integer in a query string: ASCII digits only. ``int()`` would also
    take ``" 7"``, ``"7_0"`` or Arabic-Indic digits, none of which is an
    integer to the OpenAPI document."""

    # 18 digits at most: every such number fits a signed 64-bit integer
    # (PostgreSQL's bigint), before any Range the node adds is applied.
    _DIGITS = re.compile(r"-?[0-9]{1,18}")

    def deserialize(self, node: colander.SchemaNode, cstruct: object) -> Any:
        if cstruct is colander.null or cstruct is None:
            return colander.null
        if not isinstance(cstruct, str) or not self._DIGITS.fullmatch(cstruct):
            raise colander.Invalid(node, getattr(node, "type_error_msg", "must be an integer"))
        return int(cstruct)


def strict_string_node(name: str, message: str, **kwargs: object) -> colander.SchemaNode:
    """A required string field whose every failure (missing, null, wrong type,
    invalid) reports ``message`` — the seed's one string per field."""
    node = colander.SchemaNode(StrictString(), name=name, missing_msg=message, **kwargs)
    node.type_error_msg = message
    return node


def normalise_email(value: str) -> str:
    """Trimmed and lower-cased: the form that is stored and compared."""
    return value.strip(_ASCII_WHITESPACE).lower()


# HTML5's "valid e-mail address" (colander.Email's), except that the domain
# needs a dot: a shop mails its customers, and a@localhost is a typo here.
_EMAIL_LABEL = "[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
EMAIL_REGEX = f"[a-zA-Z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_EMAIL_LABEL}(?:[.]{_EMAIL_LABEL})+"


class EmailValidator(Pattern):
    """An address of at most EMAIL_MAX_LENGTH characters as sent, surrounding
    ASCII whitespace allowed (it is trimmed)."""

    def __init__(self, message: str):
        space = "[ \\t\\n\\r\\f\\v]*"
        super().__init__(f"{space}{EMAIL_REGEX}{space}", message)
        # No ``format: email``: that format has no room for the whitespace
        # that is trimmed, and the pattern says exactly what is accepted.
        self.json_schema = {
            **self.json_schema,
            "maxLength": EMAIL_MAX_LENGTH,
            "description": "An e-mail address (HTML5's syntax, dotted domain); surrounding whitespace is trimmed.",
        }

    def __call__(self, node: colander.SchemaNode, value: str) -> None:
        # The pattern does not bound the length; this is the document's maxLength.
        if len(value) > EMAIL_MAX_LENGTH:
            raise colander.Invalid(node, self.msg)
        super().__call__(node, value)


def _prepare_email(value: object) -> object:
    # Only what may be valid is trimmed: an over-long value stays over-long,
    # so the length rule applies to the address as sent, as documented.
    # ASCII only: str.lower() maps some other letters to
    # ASCII (U+212A, the Kelvin sign, to "k"), which must not pass the pattern.
    if isinstance(value, str) and len(value) <= EMAIL_MAX_LENGTH and value.isascii():
        return normalise_email(value)
    return value


def email_node(message: str = "invalid email") -> colander.SchemaNode:
    """The ``email`` field: trimmed and lower-cased, then held to
    EmailValidator; every failure reports ``message``."""
    return strict_string_node("email", message, preparer=_prepare_email, validator=EmailValidator(message))


class StrictInteger(colander.Integer):
    """A JSON integer: no strings, floats or booleans (``True`` is an int in Python)."""

    def deserialize(self, node: colander.SchemaNode, cstruct: object) -> Any:
        if cstruct is colander.null or cstruct is None:
            return colander.null
        if isinstance(cstruct, bool) or not isinstance(cstruct, int):
            raise colander.Invalid(node, getattr(node, "type_error_msg", "must be an integer"))
        return cstruct


# --- Response bodies --------------------------------------------------------
# Nodes that only describe what the services answer, for the OpenAPI
# document: ``json_schema`` adds what colander cannot say (formats, null).


def field(name: str, typ: object = None, nullable: bool = False, **json_schema: object) -> colander.SchemaNode:
    """A required property of a response body (a string unless ``typ``)."""
    if nullable:
        json_schema["nullable"] = True
    return colander.SchemaNode(typ or colander.String(), name=name, json_schema=json_schema)


def optional(node: colander.SchemaNode) -> colander.SchemaNode:
    """The property may be absent."""
    node.missing = colander.drop
    return node


def body(
    name: str, *children: colander.SchemaNode, open_ended: bool = True, component: str | None = None
) -> colander.SchemaNode:
    """A JSON object with ``children``; ``open_ended`` objects may carry more
    properties in a later version without breaking the contract. A
    ``component`` is a shape shared by name: the document defines it once, in
    ``components/schemas``, and refers to it wherever it is used."""
    node = colander.SchemaNode(colander.Mapping(unknown="preserve" if open_ended else "ignore"), name=name)
    for child in children:
        node.add(child)
    if component is not None:
        node.component = component
    return node


def list_of(name: str, item: colander.SchemaNode) -> colander.SchemaNode:
    return colander.SchemaNode(colander.Sequence(), item, name=name)


def error_body() -> colander.SchemaNode:
    """The envelope of goshop_common.web.errors: ``{"error": ..., "details": [...]}``."""
    detail = body(
        "detail",
        field("location", nullable=True),
        field("name", nullable=True),
        field("description"),
        component="ErrorDetail",
    )
    return body("error", field("error"), optional(list_of("details", detail)), component="Error")
