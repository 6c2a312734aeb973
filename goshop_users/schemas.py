"""Request bodies of the users API. Each field fails with the seed's string."""

from __future__ import annotations

import colander

from goshop_common.schemas import email_node, strict_string_node

# A cap for fields that are only compared, never hashed or stored.
TOKEN_MAX_LENGTH = 4096
LOGIN_FIELD_MAX_LENGTH = 1024


@colander.deferred
def password_policy(node, kw):
    settings = kw["settings"]

    def validate(node, value):
        if len(value) < settings.password_min_length:
            raise colander.Invalid(node, "weak password")
        # Hashing cost does not depend on length, but parsing and moving a
        # megabyte password does: a cap keeps register from being a DoS lever.
        if len(value) > settings.password_max_length:
            raise colander.Invalid(node, "password too long")

    return validate


class RegisterSchema(colander.MappingSchema):
    email = email_node("invalid email")
    password = strict_string_node("password", "weak password", validator=password_policy)


class LoginSchema(colander.MappingSchema):
    # Any string may be tried; a malformed email simply matches no account.
    email = strict_string_node(
        "email", "email and password are required", validator=colander.Length(max=LOGIN_FIELD_MAX_LENGTH)
    )
    password = strict_string_node(
        "password", "email and password are required", validator=colander.Length(max=LOGIN_FIELD_MAX_LENGTH)
    )


class RefreshTokenSchema(colander.MappingSchema):
    refresh_token = strict_string_node(
        "refresh_token", "refresh_token is required", validator=colander.Length(min=1, max=TOKEN_MAX_LENGTH)
    )
