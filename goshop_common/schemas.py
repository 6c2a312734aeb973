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
