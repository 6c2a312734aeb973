"""The users service: accounts, logins, sessions and the public signing key."""

from __future__ import annotations

from goshop_common.auth.tokens import TokenVerifier
from goshop_common.settings import load_settings
from goshop_common.web.app import make_service_app
from goshop_users.keys import load_signing_key
from goshop_users.passwords import Passwords
from goshop_users.settings import UsersSettings
from goshop_users.tokens import TokenIssuer


def includeme(config) -> None:
    """The users service's collaborators, built once per process."""
    settings: UsersSettings = config.registry.goshop_settings
    key = load_signing_key(settings)
    config.registry.signing_key = key
    config.registry.passwords = Passwords(
        settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
    )
    config.registry.token_issuer = TokenIssuer(key, settings.jwt_issuer, settings.access_ttl)
    config.registry.token_verifier = TokenVerifier(key.algorithm, settings.jwt_issuer, {key.kid: key.public_key})


def make_app(settings: UsersSettings, ini: dict | None = None):
    return make_service_app(settings, ini, service="users", views="goshop_users.views", includes=("goshop_users",))


def main(global_config, **ini):
    """Paste entry point, served by ``python -m goshop_common.web.serve goshop_users/development.ini``
    (not pserve: it has neither the internal port nor the slow-client guard)."""
    return make_app(load_settings(UsersSettings, ini), ini)
