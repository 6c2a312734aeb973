"""Every goshop setting, read from the environment and from the Pyramid ``.ini``.

One line per setting: its name (the ``.ini`` key is ``goshop.<name>``), its
environment variable, its type and its default. The environment wins over the
ini. A malformed value fails at start-up with the setting's name in the error,
never later in a request.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

DEVELOPMENT = "development"
PRODUCTION = "production"
TEST = "test"

# Clearly marked development defaults. Production refuses both.
DEV_OPS_TOKEN = "dev-only-ops-token"  # noqa: S105 (marked dev default, refused in production)
DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-in-production"  # noqa: S105 (marked dev default)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError(f"must be > 0, got {value}")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(f"must be >= 0, got {value}")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError(f"must be > 0, got {raw}")
    return value


def _address_list(raw: str) -> tuple[str, ...]:
    import ipaddress

    addresses = tuple(part.strip() for part in raw.split(",") if part.strip())
    for address in addresses:
        ipaddress.ip_network(address, strict=False)  # raises ValueError for a typo
    return addresses


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    return parse


def _text(raw: str) -> str:
    return raw.strip()


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    env: str
    parse: Callable[[str], Any]
    default: Any


SPECS: tuple[Spec, ...] = (
    Spec("env", "GOSHOP_ENV", _one_of(DEVELOPMENT, PRODUCTION, TEST), DEVELOPMENT),
    Spec(
        "database_url",
        "GOSHOP_DATABASE_URL",
        _text,
        "postgresql://goshop:goshop@127.0.0.1:5433/goshop",
    ),
    Spec("db_pool_size", "GOSHOP_DB_POOL_SIZE", _positive_int, 10),
    Spec("db_connect_timeout", "GOSHOP_DB_CONNECT_TIMEOUT_SECONDS", _positive_int, 3),
    Spec("db_statement_timeout_ms", "GOSHOP_DB_STATEMENT_TIMEOUT_MS", _positive_int, 5000),
    Spec("kafka_bootstrap", "GOSHOP_KAFKA_BOOTSTRAP", _text, "127.0.0.1:9092"),
    Spec("jwt_issuer", "GOSHOP_JWT_ISSUER", _text, "goshop-users"),
    Spec("jwt_algorithm", "GOSHOP_JWT_ALGORITHM", _one_of("EdDSA", "RS256", "HS256"), "EdDSA"),
    # Unset: development generates a key under dev_dir; production refuses to start.
    Spec("jwt_private_key_file", "GOSHOP_JWT_PRIVATE_KEY_FILE", _text, ""),
    Spec("dev_dir", "GOSHOP_DEV_DIR", _text, ".goshop"),
    Spec("jwt_secret", "GOSHOP_JWT_SECRET", _text, DEV_JWT_SECRET),
    # How services other than users verify tokens: users' JWKS (fetched, cached,
    # refreshed on an unknown key id) unless a public key file is given.
    Spec("jwks_url", "GOSHOP_JWKS_URL", _text, "http://127.0.0.1:8081/.well-known/jwks.json"),
    Spec("jwt_public_key_file", "GOSHOP_JWT_PUBLIC_KEY_FILE", _text, ""),
    Spec("access_ttl", "GOSHOP_ACCESS_TTL_SECONDS", _positive_int, 7200),
    Spec("refresh_ttl", "GOSHOP_REFRESH_TTL_SECONDS", _positive_int, 30 * 24 * 3600),
    Spec(
        "refresh_reuse_interval",
        "GOSHOP_REFRESH_REUSE_INTERVAL_SECONDS",
        _non_negative_int,
        10,
    ),
    Spec("password_min_length", "GOSHOP_PASSWORD_MIN_LENGTH", _positive_int, 8),
    Spec("password_max_length", "GOSHOP_PASSWORD_MAX_LENGTH", _positive_int, 256),
    # OWASP's argon2id recommendation (m=19 MiB, t=2, p=1). p=1 lets concurrent
    # logins scale across waitress threads instead of fighting for cores.
    Spec("argon2_time_cost", "GOSHOP_ARGON2_TIME_COST", _positive_int, 2),
    Spec("argon2_memory_kib", "GOSHOP_ARGON2_MEMORY_KIB", _positive_int, 19456),
    Spec("argon2_parallelism", "GOSHOP_ARGON2_PARALLELISM", _positive_int, 1),
    Spec("login_max_failures_per_email", "GOSHOP_LOGIN_MAX_FAILURES_PER_EMAIL", _positive_int, 5),
    Spec("login_max_failures_per_ip", "GOSHOP_LOGIN_MAX_FAILURES_PER_IP", _positive_int, 50),
    Spec("login_failure_window", "GOSHOP_LOGIN_FAILURE_WINDOW_SECONDS", _positive_int, 900),
    Spec("default_currency", "GOSHOP_DEFAULT_CURRENCY", _text, "RUB"),
    Spec("order_max_amount_cents", "GOSHOP_ORDER_MAX_AMOUNT_CENTS", _positive_int, 100_000_000),
    Spec("idempotency_key_ttl", "GOSHOP_IDEMPOTENCY_KEY_TTL_SECONDS", _positive_int, 24 * 3600),
    # The mock payment provider fails amounts divisible by this (0: never fails).
    Spec("payments_fail_divisor", "GOSHOP_PAYMENTS_FAIL_DIVISOR", _non_negative_int, 5),
    # Kafka consumer groups; a second deployment of the shop on one broker needs its own.
    Spec("orders_consumer_group", "GOSHOP_ORDERS_CONSUMER_GROUP", _text, "goshop-orders"),
    Spec("payments_consumer_group", "GOSHOP_PAYMENTS_CONSUMER_GROUP", _text, "goshop-payments"),
    Spec("outbox_batch_size", "GOSHOP_OUTBOX_BATCH_SIZE", _positive_int, 100),
    Spec("outbox_poll_seconds", "GOSHOP_OUTBOX_POLL_SECONDS", _positive_int, 5),
    Spec("outbox_backoff_base_ms", "GOSHOP_OUTBOX_BACKOFF_BASE_MS", _positive_int, 500),
    Spec("outbox_backoff_cap_seconds", "GOSHOP_OUTBOX_BACKOFF_CAP_SECONDS", _positive_int, 60),
    # The gateway's upstreams and how long it waits for them.
    Spec("users_url", "GOSHOP_USERS_URL", _text, "http://127.0.0.1:8081"),
    Spec("orders_url", "GOSHOP_ORDERS_URL", _text, "http://127.0.0.1:8082"),
    Spec("payments_url", "GOSHOP_PAYMENTS_URL", _text, "http://127.0.0.1:8083"),
    Spec("upstream_connect_timeout", "GOSHOP_UPSTREAM_CONNECT_TIMEOUT_SECONDS", _positive_float, 1.0),
    Spec("upstream_read_timeout", "GOSHOP_UPSTREAM_READ_TIMEOUT_SECONDS", _positive_float, 10.0),
    # Proxies whose X-Forwarded-For is believed (the gateway, an ingress): the
    # client address behind them is what login throttling counts.
    Spec("trusted_proxies", "GOSHOP_TRUSTED_PROXIES", _address_list, ("127.0.0.1/32", "::1/128")),
    Spec("ops_url", "GOSHOP_OPS_URL", _text, "http://127.0.0.1:8085"),
    # Ops assistant. Unset OLLAMA_URL: it explains by rules, without an LLM.
    Spec("ollama_url", "OLLAMA_URL", _text, ""),
    Spec("ollama_model", "OLLAMA_MODEL", _text, "llama3.2"),
    Spec("ollama_timeout", "GOSHOP_OLLAMA_TIMEOUT_SECONDS", _positive_float, 30.0),
    Spec("ollama_temperature", "GOSHOP_OLLAMA_TEMPERATURE", float, 0.2),
    # The operator's bearer token for /v1/ops/*; the development value is refused in production.
    Spec("ops_token", "GOSHOP_OPS_TOKEN", _text, DEV_OPS_TOKEN),
    Spec("max_body_bytes", "GOSHOP_MAX_BODY_BYTES", _positive_int, 1024 * 1024),
    Spec("log_level", "GOSHOP_LOG_LEVEL", _one_of("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    env: str
    database_url: str
    db_pool_size: int
    db_connect_timeout: int
    db_statement_timeout_ms: int
    kafka_bootstrap: str
    jwt_issuer: str
    jwt_algorithm: str
    jwt_private_key_file: str
    dev_dir: str
    jwt_secret: str
    jwks_url: str
    jwt_public_key_file: str
    access_ttl: int
    refresh_ttl: int
    refresh_reuse_interval: int
    password_min_length: int
    password_max_length: int
    argon2_time_cost: int
    argon2_memory_kib: int
    argon2_parallelism: int
    login_max_failures_per_email: int
    login_max_failures_per_ip: int
    login_failure_window: int
    default_currency: str
    order_max_amount_cents: int
    idempotency_key_ttl: int
    payments_fail_divisor: int
    orders_consumer_group: str
    payments_consumer_group: str
    outbox_batch_size: int
    outbox_poll_seconds: int
    outbox_backoff_base_ms: int
    outbox_backoff_cap_seconds: int
    users_url: str
    orders_url: str
    payments_url: str
    upstream_connect_timeout: float
    upstream_read_timeout: float
    trusted_proxies: tuple[str, ...]
    ops_url: str
    ollama_url: str
    ollama_model: str
    ollama_timeout: float
    ollama_temperature: float
    ops_token: str
    max_body_bytes: int
    log_level: str

    @property
    def production(self) -> bool:
        return self.env == PRODUCTION


def load_settings(ini: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``ini`` (``goshop.<name>`` keys) and ``environ``.

    Raises SettingsError naming the first malformed setting, or a development
    default that production refuses.
    """
    ini = ini or {}
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for spec in SPECS:
        raw = environ.get(spec.env)
        source = spec.env
        if raw is None or raw == "":
            raw = ini.get(f"goshop.{spec.name}")
            source = f"goshop.{spec.name}"
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            values[spec.name] = spec.default
            continue
        try:
            values[spec.name] = spec.parse(str(raw))
        except ValueError as exc:
            raise SettingsError(f"setting {source}: {exc}") from None
    settings = Settings(**values)
    _refuse_development_defaults(settings)
    return settings


def _refuse_development_defaults(settings: Settings) -> None:
    # The signing key is checked where it is loaded (goshop_users.keys): only
    # users signs, so only users needs a private key in production.
    if not settings.production:
        return
    if settings.ops_token == DEV_OPS_TOKEN or len(settings.ops_token) < 32:
        raise SettingsError("GOSHOP_OPS_TOKEN must be set to a secret of 32+ characters in production")
    if settings.jwt_algorithm == "HS256":
        if settings.jwt_secret == DEV_JWT_SECRET:
            raise SettingsError("GOSHOP_JWT_SECRET is the development default; production refuses it")
        if len(settings.jwt_secret.encode()) < 32:
            raise SettingsError("GOSHOP_JWT_SECRET must be at least 32 bytes in production")
