"""Request bodies of the users API. Each field fails with the seed's string."""

from __future__ import annotations

from typing import ClassVar

import colander

from goshop_common.web.schemas import email_node, strict_string_node

# A cap for fields that are only compared, never hashed or stored.
TOKEN_MAX_LENGTH = 4096
LOGIN_FIELD_MAX_LENGTH = 1024


@colander.deferred
def password_policy(node, kw):
    """The password rule, from settings when the schema is bound: at least
    ``password_min_length`` and at most ``password_max_length`` characters."""
    settings = kw["settings"]

    def validate(node, value):
        if len(value) < settings.password_min_length:
            raise colander.Invalid(node, "weak password")
        # Hashing cost does not depend on length, but parsing and moving a
        # megabyte password does: a cap keeps register from being a DoS lever.
        if len(value) > settings.password_max_length:
            raise colander.Invalid(node, "password too long")

    # The same rule, for the OpenAPI document (goshop_common.web.openapi).
    validate.json_schema = {"minLength": settings.password_min_length, "maxLength": settings.password_max_length}
    return validate


# The original service's answer to an empty or missing email or password, on
# register and login alike.
REQUIRED = "email and password are required"


class _PresentThen:
    """Refuses an empty value with REQUIRED, then applies ``rule``: one
    message per field, never both (``colander.All`` would join them)."""

    def __init__(self, rule):
        self.rule = rule

    def __call__(self, node, value):
        if value == "":
            raise colander.Invalid(node, REQUIRED)
        if self.rule is not None:
            self.rule(node, value)


class RegisterSchema(colander.MappingSchema):
    """POST /v1/users/register: a valid email and a password the policy takes."""

    component: ClassVar[str] = "NewAccount"

    email = email_node("invalid email")
    password = strict_string_node("password", "weak password", validator=password_policy)

    def after_bind(self, node, kw):
        # Empty (after trimming) or absent comes first, with the seed's words;
        # the format and strength rules only judge what is there.
        for child in node.children:
            child.missing_msg = REQUIRED
            child.validator = _PresentThen(child.validator)


class LoginSchema(colander.MappingSchema):
    """POST /v1/users/login: two non-empty strings, bounded in length."""

    component: ClassVar[str] = "Credentials"

    # Any string may be tried; a malformed email simply matches no account.
    email = strict_string_node(
        "email", REQUIRED, validator=colander.Length(min=1, max=LOGIN_FIELD_MAX_LENGTH, min_err=REQUIRED)
    )
    password = strict_string_node(
        "password", REQUIRED, validator=colander.Length(min=1, max=LOGIN_FIELD_MAX_LENGTH, min_err=REQUIRED)
    )


class RefreshTokenSchema(colander.MappingSchema):
    """The body of refresh and logout alike: the refresh token to use or end."""

    component: ClassVar[str] = "RefreshToken"

    refresh_token = strict_string_node(
        "refresh_token", "refresh_token is required", validator=colander.Length(min=1, max=TOKEN_MAX_LENGTH)
    )
