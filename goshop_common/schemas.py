"""Colander types and nodes shared by the services' request schemas.

Colander's own ``String`` turns ``123`` or ``{}`` into a string; an API that
accepts that hides client bugs, so goshop's strings are strict.
"""

from __future__ import annotations

import colander

# RFC 5321 caps a forward path at 254 characters.
EMAIL_MAX_LENGTH = 254


class StrictString(colander.String):
    """A JSON string and nothing else (no numbers, booleans, objects), without NUL."""

    def deserialize(self, node, cstruct):
        if cstruct is colander.null or cstruct is None:
            return colander.null
        if not isinstance(cstruct, str):
            raise colander.Invalid(node, getattr(node, "type_error_msg", "must be a string"))
        if "\x00" in cstruct:
            # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the driver.
            raise colander.Invalid(node, getattr(node, "type_error_msg", "must be a string"))
        return cstruct


def strict_string_node(name: str, message: str, **kwargs) -> colander.SchemaNode:
    """A required string field whose every failure (missing, null, wrong type,
    invalid) reports ``message`` — the seed's one string per field."""
    node = colander.SchemaNode(StrictString(), name=name, missing_msg=message, **kwargs)
    node.type_error_msg = message
    return node


def normalise_email(value: str) -> str:
    """Trimmed and lower-cased: the form that is stored and compared."""
    return value.strip().lower()


class EmailValidator:
    def __init__(self, message: str):
        self.message = message
        self._email = colander.Email(msg=message)

    def __call__(self, node, value):
        if len(value) > EMAIL_MAX_LENGTH:
            raise colander.Invalid(node, self.message)
        self._email(node, value)
        # A shop mails its customers: a dotless domain (a@localhost) is a typo here.
        domain = value.rpartition("@")[2]
        if "." not in domain.strip("."):
            raise colander.Invalid(node, self.message)


def email_node(message: str = "invalid email") -> colander.SchemaNode:
    return strict_string_node(
        "email",
        message,
        preparer=lambda value: normalise_email(value) if isinstance(value, str) else value,
        validator=EmailValidator(message),
    )


class StrictInteger(colander.Integer):
    """A JSON integer: no strings, floats or booleans (``True`` is an int in Python)."""

    def deserialize(self, node, cstruct):
        if cstruct is colander.null or cstruct is None:
            return colander.null
        if isinstance(cstruct, bool) or not isinstance(cstruct, int):
            raise colander.Invalid(node, getattr(node, "type_error_msg", "must be an integer"))
        return cstruct


@colander.deferred
def _amount_range(node, kw):
    maximum = kw["settings"].order_max_amount_cents

    def validate(node, value):
        if value <= 0:
            raise colander.Invalid(node, "amount_cents must be a positive integer")
        if value > maximum:
            raise colander.Invalid(node, f"amount_cents must not exceed {maximum}")

    return validate


def amount_cents_node() -> colander.SchemaNode:
    """Money in minor units: a positive integer up to ``order_max_amount_cents``."""
    node = colander.SchemaNode(
        StrictInteger(), name="amount_cents", missing_msg="amount_cents is required", validator=_amount_range
    )
    node.type_error_msg = "amount_cents must be a positive integer"
    return node


@colander.deferred
def _default_currency(node, kw):
    return kw["settings"].default_currency


def currency_node() -> colander.SchemaNode:
    """An ISO 4217 alphabetic code (three capital letters); the default currency when absent."""
    node = colander.SchemaNode(
        StrictString(),
        name="currency",
        missing=_default_currency,
        preparer=lambda value: value.strip().upper() if isinstance(value, str) else value,
        validator=colander.Regex(r"^[A-Z]{3}$", msg="currency must be a 3-letter ISO 4217 code"),
    )
    node.type_error_msg = "currency must be a 3-letter ISO 4217 code"
    return node
