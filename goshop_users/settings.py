"""The users service's settings: the kernel's database, HTTP and token groups,
the login-failure window it shares with the maintenance worker
(goshop_users.retention), and its own."""

from __future__ import annotations

import dataclasses

from goshop_common.settings import (
    DatabaseSettings,
    HttpSettings,
    TokenSettings,
    non_negative_int,
    positive_int,
    setting,
    text,
)
from goshop_users.retention import LoginFailureWindow


@dataclasses.dataclass(frozen=True)
class UsersSettings(DatabaseSettings, HttpSettings, TokenSettings, LoginFailureWindow):
    # Unset: development generates a key under dev_dir; production refuses to
    # start (goshop_users.keys, where the key is loaded).
    jwt_private_key_file: str = setting(
        "GOSHOP_JWT_PRIVATE_KEY_FILE", text, "", production_note="**required** unless HS256"
    )
    dev_dir: str = setting("GOSHOP_DEV_DIR", text, ".goshop")
    access_ttl: int = setting("GOSHOP_ACCESS_TTL_SECONDS", positive_int, 7200)
    refresh_ttl: int = setting("GOSHOP_REFRESH_TTL_SECONDS", positive_int, 30 * 24 * 3600)
    # Two tabs refreshing at once: the rotated token still yields the
    # successor, once, within this many seconds (goshop_users.sessions).
    refresh_reuse_interval: int = setting("GOSHOP_REFRESH_REUSE_INTERVAL_SECONDS", non_negative_int, 2)

    # Passwords: OWASP's argon2id recommendation (m=19 MiB, t=2, p=1). p=1 lets
    # concurrent logins scale across waitress threads instead of fighting for cores.
    password_min_length: int = setting("GOSHOP_PASSWORD_MIN_LENGTH", positive_int, 8)
    password_max_length: int = setting("GOSHOP_PASSWORD_MAX_LENGTH", positive_int, 256)
    argon2_time_cost: int = setting("GOSHOP_ARGON2_TIME_COST", positive_int, 2)
    argon2_memory_kib: int = setting("GOSHOP_ARGON2_MEMORY_KIB", positive_int, 19456)
    argon2_parallelism: int = setting("GOSHOP_ARGON2_PARALLELISM", positive_int, 1)

    # Failed logins (goshop_users.throttle): per email from one client, per
    # client, and a ceiling per email across every client.
    login_max_failures_per_email_and_client: int = setting(
        "GOSHOP_LOGIN_MAX_FAILURES_PER_EMAIL_AND_CLIENT", positive_int, 5
    )
    login_max_failures_per_client: int = setting("GOSHOP_LOGIN_MAX_FAILURES_PER_CLIENT", positive_int, 50)
    login_max_failures_per_email: int = setting("GOSHOP_LOGIN_MAX_FAILURES_PER_EMAIL", positive_int, 100)
