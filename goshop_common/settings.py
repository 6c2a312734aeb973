"""Every goshop setting, read from the environment and from the Pyramid ``.ini``.

Each setting is declared once, as a field of ``Settings``: its environment
variable, its type, its default, which processes use it, and whether it is a
secret that production must be given. The ``.ini`` key is ``goshop.<field>``;
the environment wins over the ini. A malformed value fails at start-up with
the setting's name in the error, never later in a request.

A process loads only its own section (``load_settings(service="orders")``):
settings it does not use are ``None``, so code that reaches for another
service's setting fails in the tests instead of quietly reading a default,
and production demands only the secrets that process really needs.

OpenTelemetry's ``OTEL_*`` variables are not here on purpose: the SDK reads
them itself, by its own rules (goshop_common.observability.tracing says why).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from goshop_common.currencies import ISO_4217

DEVELOPMENT = "development"
PRODUCTION = "production"
TEST = "test"

# The processes of the shop, as their entry points name them.
USERS = "users"
ORDERS = "orders"
PAYMENTS = "payments"
GATEWAY = "gateway"
OPS = "ops"
OUTBOXER = "outboxer"
ORDERS_CONSUMER = "orders-consumer"
PAYMENTS_CONSUMER = "payments-consumer"
MIGRATE = "migrate"
MAINTENANCE = "maintenance"
# Creates the database roles, as an administrator (goshop_common.db.roles).
DB_ROLES = "db-roles"
SERVICES = (
    USERS,
    ORDERS,
    PAYMENTS,
    GATEWAY,
    OPS,
    OUTBOXER,
    ORDERS_CONSUMER,
    PAYMENTS_CONSUMER,
    MIGRATE,
    MAINTENANCE,
    DB_ROLES,
)

_ALL = SERVICES
_HTTP = (USERS, ORDERS, PAYMENTS, GATEWAY, OPS)
_DATABASE = (USERS, ORDERS, PAYMENTS, OPS, OUTBOXER, ORDERS_CONSUMER, PAYMENTS_CONSUMER, MIGRATE, MAINTENANCE, DB_ROLES)
# Ops reads and replays the dead-letter topics (goshop_common.messaging.deadletters).
_BROKER = (OPS, OUTBOXER, ORDERS_CONSUMER, PAYMENTS_CONSUMER)
# Services that check users' access tokens (users itself holds the key).
_VERIFIERS = (ORDERS, PAYMENTS, GATEWAY)
_TOKENS = (USERS, *_VERIFIERS)

# Clearly marked development defaults. Production refuses both.
DEV_OPS_TOKEN = "dev-only-ops-token"  # noqa: S105 (marked dev default, refused in production)
DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-in-production"  # noqa: S105 (marked dev default)
# The administrator's: make run's embedded PostgreSQL. Each process of make
# run connects as its own role (goshop_common.db.roles), with this password too.
DEV_DATABASE_PASSWORD = "goshop"  # noqa: S105 (marked dev default, refused in production)
DEV_DATABASE_URL = f"postgresql://goshop:{DEV_DATABASE_PASSWORD}@127.0.0.1:5433/goshop"

# Every secret value the repository holds: the defaults above, the kind
# Secret (k8s/goshop-secrets.yaml), the compose files' and the embedded
# PostgreSQL's password. Production refuses each of them;
# tests/unit/goshop_common/test_repository_secrets.py scans the repository
# so that a new committed value cannot be missing here.
REPOSITORY_SECRETS = frozenset(
    {
        DEV_OPS_TOKEN,
        DEV_JWT_SECRET,
        "dev-only-ops-token-for-kind-do-not-use-in-production",
    }
)
REPOSITORY_DATABASE_PASSWORDS = frozenset({DEV_DATABASE_PASSWORD})


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


# -- parsers ------------------------------------------------------------------


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


def _float(raw: str) -> float:
    return float(raw)


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError(f"not a port number: {value}")
    return value


def _address_list(raw: str) -> tuple[str, ...]:
    if raw.strip().lower() == "none":  # trust nobody: the edge
        return ()
    addresses = tuple(part.strip() for part in raw.split(",") if part.strip())
    for address in addresses:
        ipaddress.ip_network(address, strict=False)  # raises ValueError for a typo
    return addresses


def _schema_list(raw: str) -> tuple[str, ...]:
    schemas = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not schemas:
        raise ValueError("names no schema")
    for schema in schemas:
        # Lower-case unquoted identifiers only: the name is spliced into SQL.
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise ValueError(f"not a schema name: {schema!r}")
    return schemas


def _public_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"must be http(s)://host[:port][/prefix]; got {raw.strip()!r}")
    return raw.strip().rstrip("/")


def _currency(raw: str) -> str:
    code = raw.strip().upper()
    if code not in ISO_4217:
        raise ValueError(f"not an ISO 4217 currency code: {raw.strip()!r}")
    return code


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    return parse


def _text(raw: str) -> str:
    return raw.strip()


def _setting(
    env: str,
    parse: Callable[[str], Any],
    default: Any,
    services: Iterable[str],
    *,
    secret: bool = False,
    required_in_production: bool = False,
    production_note: str = "",
) -> Any:
    """One setting: a dataclass field whose metadata says how to read it.
    ``production_note`` documents a production rule checked elsewhere."""
    metadata = {
        "env": env,
        "parse": parse,
        "services": frozenset(services),
        "secret": secret,
        "required_in_production": required_in_production,
        "production_note": production_note,
    }
    return dataclasses.field(default=default, metadata=metadata)


def _role_password(role: str) -> Any:
    """A database role's password: only the roles bootstrap reads it."""
    env = f"GOSHOP_DB_{role}_PASSWORD"
    return _setting(env, _text, DEV_DATABASE_PASSWORD, (DB_ROLES,), secret=True, required_in_production=True)


# -- the settings ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every goshop setting, one field each (see ``_setting``).

    ``load_settings(service=...)`` fills only the fields that ``service``
    uses and leaves the rest None, so a process reading another's setting
    fails loudly in its tests instead of quietly using a default."""

    env: str = _setting("GOSHOP_ENV", _one_of(DEVELOPMENT, PRODUCTION, TEST), DEVELOPMENT, _ALL)
    log_level: str = _setting("GOSHOP_LOG_LEVEL", _one_of("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", _ALL)
    log_format: str = _setting(
        "GOSHOP_LOG_FORMAT", _one_of("json", "console"), "json", _ALL, production_note="production logs JSON"
    )

    # The database. The URL carries the password: a secret.
    database_url: str = _setting(
        "GOSHOP_DATABASE_URL", _text, DEV_DATABASE_URL, _DATABASE, secret=True, required_in_production=True
    )
    db_pool_size: int = _setting("GOSHOP_DB_POOL_SIZE", _positive_int, 10, _DATABASE)
    db_connect_timeout: int = _setting("GOSHOP_DB_CONNECT_TIMEOUT_SECONDS", _positive_int, 3, _DATABASE)
    db_statement_timeout_ms: int = _setting("GOSHOP_DB_STATEMENT_TIMEOUT_MS", _positive_int, 5000, _DATABASE)

    # Each database role's password, which the roles bootstrap (run with an
    # administrator's GOSHOP_DATABASE_URL) sets; each process's own URL carries
    # its role's (goshop_common.db.roles).
    db_migrate_password: str = _role_password("MIGRATE")
    db_users_password: str = _role_password("USERS")
    db_orders_password: str = _role_password("ORDERS")
    db_payments_password: str = _role_password("PAYMENTS")
    db_outboxer_password: str = _role_password("OUTBOXER")
    db_ops_password: str = _role_password("OPS")
    db_maintenance_password: str = _role_password("MAINTENANCE")

    kafka_bootstrap: str = _setting(
        "GOSHOP_KAFKA_BOOTSTRAP", _text, "127.0.0.1:9092", _BROKER, required_in_production=True
    )
    # Options for a development broker over the Kafka defaults (goshop_common.messaging.broker_profiles);
    # make run and the tests select "tansu". Read by the Kafka clients from the environment.
    kafka_broker_profile: str = _setting(
        "GOSHOP_KAFKA_BROKER_PROFILE",
        _one_of("kafka", "tansu"),
        "kafka",
        _BROKER,
        production_note="`kafka`; others refused",
    )

    # Tokens: users signs them, the verifiers check them.
    jwt_issuer: str = _setting("GOSHOP_JWT_ISSUER", _text, "goshop-users", _TOKENS)
    jwt_algorithm: str = _setting("GOSHOP_JWT_ALGORITHM", _one_of("EdDSA", "RS256", "HS256"), "EdDSA", _TOKENS)
    # Unset: development generates a key under dev_dir; production refuses to
    # start (goshop_users.keys, where the key is loaded).
    jwt_private_key_file: str = _setting(
        "GOSHOP_JWT_PRIVATE_KEY_FILE", _text, "", (USERS,), production_note="**required** unless HS256"
    )
    dev_dir: str = _setting("GOSHOP_DEV_DIR", _text, ".goshop", (USERS,))
    # Only with HS256, where signer and verifiers share it.
    jwt_secret: str = _setting(
        "GOSHOP_JWT_SECRET", _text, DEV_JWT_SECRET, _TOKENS, secret=True, production_note="with HS256: ≥ 32 bytes"
    )
    # How the verifiers get users' public keys: its JWKS (fetched, cached,
    # refreshed on an unknown key id) unless a public key file is given.
    jwks_url: str = _setting("GOSHOP_JWKS_URL", _text, "http://127.0.0.1:8081/.well-known/jwks.json", _VERIFIERS)
    jwt_public_key_file: str = _setting("GOSHOP_JWT_PUBLIC_KEY_FILE", _text, "", _VERIFIERS)
    access_ttl: int = _setting("GOSHOP_ACCESS_TTL_SECONDS", _positive_int, 7200, (USERS,))
    refresh_ttl: int = _setting("GOSHOP_REFRESH_TTL_SECONDS", _positive_int, 30 * 24 * 3600, (USERS,))
    # Two tabs refreshing at once: the rotated token still yields the
    # successor, once, within this many seconds (goshop_users.sessions).
    refresh_reuse_interval: int = _setting("GOSHOP_REFRESH_REUSE_INTERVAL_SECONDS", _non_negative_int, 2, (USERS,))

    # Passwords: OWASP's argon2id recommendation (m=19 MiB, t=2, p=1). p=1 lets
    # concurrent logins scale across waitress threads instead of fighting for cores.
    password_min_length: int = _setting("GOSHOP_PASSWORD_MIN_LENGTH", _positive_int, 8, (USERS,))
    password_max_length: int = _setting("GOSHOP_PASSWORD_MAX_LENGTH", _positive_int, 256, (USERS,))
    argon2_time_cost: int = _setting("GOSHOP_ARGON2_TIME_COST", _positive_int, 2, (USERS,))
    argon2_memory_kib: int = _setting("GOSHOP_ARGON2_MEMORY_KIB", _positive_int, 19456, (USERS,))
    argon2_parallelism: int = _setting("GOSHOP_ARGON2_PARALLELISM", _positive_int, 1, (USERS,))

    # Failed logins (goshop_users.throttle): per email from one client, per
    # client, and a ceiling per email across every client.
    login_max_failures_per_email_and_client: int = _setting(
        "GOSHOP_LOGIN_MAX_FAILURES_PER_EMAIL_AND_CLIENT", _positive_int, 5, (USERS,)
    )
    login_max_failures_per_client: int = _setting("GOSHOP_LOGIN_MAX_FAILURES_PER_CLIENT", _positive_int, 50, (USERS,))
    login_max_failures_per_email: int = _setting("GOSHOP_LOGIN_MAX_FAILURES_PER_EMAIL", _positive_int, 100, (USERS,))
    # Also when the maintenance worker may delete a counter: once its window is over.
    login_failure_window: int = _setting(
        "GOSHOP_LOGIN_FAILURE_WINDOW_SECONDS", _positive_int, 900, (USERS, MAINTENANCE)
    )

    # Orders and payments.
    default_currency: str = _setting("GOSHOP_DEFAULT_CURRENCY", _currency, "RUB", (ORDERS, GATEWAY))
    order_max_amount_cents: int = _setting(
        "GOSHOP_ORDER_MAX_AMOUNT_CENTS", _positive_int, 100_000_000, (ORDERS, GATEWAY)
    )
    # Also when the maintenance worker deletes a key: once orders would no longer replay it.
    idempotency_key_ttl: int = _setting(
        "GOSHOP_IDEMPOTENCY_KEY_TTL_SECONDS", _positive_int, 24 * 3600, (ORDERS, MAINTENANCE)
    )
    # The mock payment provider fails amounts divisible by this (0: never fails).
    payments_fail_divisor: int = _setting("GOSHOP_PAYMENTS_FAIL_DIVISOR", _non_negative_int, 5, (PAYMENTS_CONSUMER,))
    # The payment timeout: the orders consumer cancels an order still new this
    # long after it was placed (reason payment_timeout), looking this often.
    order_payment_timeout: float = _setting(
        "GOSHOP_ORDER_PAYMENT_TIMEOUT_SECONDS", _positive_float, 900.0, (ORDERS_CONSUMER,)
    )
    order_sweep_interval: float = _setting(
        "GOSHOP_ORDER_SWEEP_INTERVAL_SECONDS", _positive_float, 5.0, (ORDERS_CONSUMER,)
    )
    # A consumer that holds lag or waits for its group, and has not moved for
    # this long while its database and broker answer, fails its /live.
    consumer_stall_seconds: float = _setting(
        "GOSHOP_CONSUMER_STALL_SECONDS", _positive_float, 60.0, (ORDERS_CONSUMER, PAYMENTS_CONSUMER)
    )
    # Kafka consumer groups; a second deployment of the shop on one broker needs its own.
    orders_consumer_group: str = _setting("GOSHOP_ORDERS_CONSUMER_GROUP", _text, "goshop-orders", (ORDERS_CONSUMER,))
    payments_consumer_group: str = _setting(
        "GOSHOP_PAYMENTS_CONSUMER_GROUP", _text, "goshop-payments", (PAYMENTS_CONSUMER,)
    )

    # The outbox relay. It relays the outbox table of each schema named here
    # (every service with an outbox has one, made by create_outbox_v1), so a
    # new producing service is a setting, not a code change in the outboxer.
    outbox_schemas: tuple[str, ...] = _setting(
        "GOSHOP_OUTBOX_SCHEMAS", _schema_list, ("orders", "payments"), (OUTBOXER,)
    )
    outbox_batch_size: int = _setting("GOSHOP_OUTBOX_BATCH_SIZE", _positive_int, 100, (OUTBOXER,))
    outbox_poll_seconds: int = _setting("GOSHOP_OUTBOX_POLL_SECONDS", _positive_int, 5, (OUTBOXER,))
    outbox_backoff_base_ms: int = _setting("GOSHOP_OUTBOX_BACKOFF_BASE_MS", _positive_int, 500, (OUTBOXER,))
    outbox_backoff_cap_seconds: int = _setting("GOSHOP_OUTBOX_BACKOFF_CAP_SECONDS", _positive_int, 60, (OUTBOXER,))

    # Retention (goshop_maintenance): how long rows nobody needs any more are
    # kept before the maintenance worker deletes them, in small batches. The
    # idempotency keys and login-failure counters go when orders and users
    # stop reading them (idempotency_key_ttl, login_failure_window).
    retention_interval: int = _setting("GOSHOP_RETENTION_INTERVAL_SECONDS", _positive_int, 300, (MAINTENANCE,))
    retention_batch_size: int = _setting("GOSHOP_RETENTION_BATCH_SIZE", _positive_int, 1000, (MAINTENANCE,))
    # Published outbox rows only: a pending or failing row stays however old it is.
    retention_outbox: int = _setting("GOSHOP_RETENTION_OUTBOX_SECONDS", _positive_int, 7 * 24 * 3600, (MAINTENANCE,))
    # The longest a record stays readable on the broker: Kafka keeps a segment
    # until its newest record is retention.ms old, and a segment rolls after
    # segment.ms, so a record can outlive retention.ms by up to segment.ms
    # (7 d + 7 d with Kafka's defaults). Declared, not asked of the broker.
    broker_retention: int = _setting("GOSHOP_BROKER_RETENTION_SECONDS", _positive_int, 14 * 24 * 3600, (MAINTENANCE,))
    # The dedupe horizon: an inbox row must outlive every copy of its event
    # that a consumer could still read, so it must be longer than
    # broker_retention (load_settings refuses one that is not).
    retention_inbox: int = _setting("GOSHOP_RETENTION_INBOX_SECONDS", _positive_int, 30 * 24 * 3600, (MAINTENANCE,))
    # Sessions ended (expired or revoked) this long ago.
    retention_sessions: int = _setting(
        "GOSHOP_RETENTION_SESSIONS_SECONDS", _positive_int, 30 * 24 * 3600, (MAINTENANCE,)
    )

    # The shop's address as its clients know it: every Location the gateway
    # answers starts with it, whatever Host a client sent.
    public_url: str = _setting(
        "GOSHOP_PUBLIC_URL", _public_url, "http://127.0.0.1:8080", (GATEWAY,), required_in_production=True
    )
    # The gateway's upstreams and how long it waits for them.
    users_url: str = _setting(
        "GOSHOP_USERS_URL", _text, "http://127.0.0.1:8081", (GATEWAY,), required_in_production=True
    )
    orders_url: str = _setting(
        "GOSHOP_ORDERS_URL", _text, "http://127.0.0.1:8082", (GATEWAY,), required_in_production=True
    )
    payments_url: str = _setting(
        "GOSHOP_PAYMENTS_URL", _text, "http://127.0.0.1:8083", (GATEWAY,), required_in_production=True
    )
    ops_url: str = _setting("GOSHOP_OPS_URL", _text, "http://127.0.0.1:8085", (GATEWAY,), required_in_production=True)
    upstream_connect_timeout: float = _setting(
        "GOSHOP_UPSTREAM_CONNECT_TIMEOUT_SECONDS", _positive_float, 1.0, (GATEWAY,)
    )
    upstream_read_timeout: float = _setting("GOSHOP_UPSTREAM_READ_TIMEOUT_SECONDS", _positive_float, 10.0, (GATEWAY,))

    # HTTP: proxies whose X-Forwarded-For is believed (for the gateway, the
    # ingress; for the services, the gateway). The client address behind them
    # is what login throttling counts. "none" trusts nobody.
    trusted_proxies: tuple[str, ...] = _setting(
        "GOSHOP_TRUSTED_PROXIES", _address_list, ("127.0.0.1/32", "::1/128"), _HTTP
    )
    max_body_bytes: int = _setting("GOSHOP_MAX_BODY_BYTES", _positive_int, 1024 * 1024, _HTTP)
    # The internal port (/metrics, detailed health) beside the public one; each
    # service's ini names its own (9080 + offset). 0: no internal server.
    metrics_port: int = _setting("GOSHOP_METRICS_PORT", _port, 0, _HTTP)
    # Slow clients (goshop_common.web.slowclients): the public port's open
    # connections, and how long a request's headers may take to arrive.
    http_connection_limit: int = _setting("GOSHOP_HTTP_CONNECTION_LIMIT", _positive_int, 4096, _HTTP)
    http_header_timeout: float = _setting("GOSHOP_HTTP_HEADER_TIMEOUT_SECONDS", _positive_float, 10.0, _HTTP)

    # Ops assistant. Unset OLLAMA_URL: it explains by rules, without an LLM.
    ollama_url: str = _setting("OLLAMA_URL", _text, "", (OPS,))
    ollama_model: str = _setting("OLLAMA_MODEL", _text, "llama3.2", (OPS,))
    # The gateway waits this much longer on explain, which waits for the LLM.
    ollama_timeout: float = _setting("GOSHOP_OLLAMA_TIMEOUT_SECONDS", _positive_float, 30.0, (OPS, GATEWAY))
    ollama_temperature: float = _setting("GOSHOP_OLLAMA_TEMPERATURE", _float, 0.2, (OPS,))
    # The operator's bearer token for /v1/ops/*.
    ops_token: str = _setting(
        "GOSHOP_OPS_TOKEN",
        _text,
        DEV_OPS_TOKEN,
        (OPS,),
        secret=True,
        required_in_production=True,
        production_note="≥ 32 characters",
    )

    @property
    def production(self) -> bool:
        return self.env == PRODUCTION


@dataclasses.dataclass(frozen=True)
class Spec:
    """How one setting is read (a view of its field, for tools and tests)."""

    name: str
    env: str
    parse: Callable[[str], Any]
    default: Any
    services: frozenset[str]
    secret: bool
    required_in_production: bool
    production_note: str


SPECS: tuple[Spec, ...] = tuple(
    Spec(name=field.name, default=field.default, **field.metadata) for field in dataclasses.fields(Settings)
)


def specs_for(service: str | None) -> tuple[Spec, ...]:
    """The settings ``service`` uses; every setting for ``None`` (tests, tools)."""
    if service is None:
        return SPECS
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
    return tuple(spec for spec in SPECS if service in spec.services)


def load_settings(
    ini: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    service: str | None = None,
) -> Settings:
    """Build ``service``'s settings from ``ini`` (``goshop.<name>`` keys) and
    ``environ``; settings of other services are ``None``.

    Raises SettingsError naming the first malformed setting, a secret that
    production needs and was not given, or a value production refuses.
    """
    ini = ini or {}
    environ = os.environ if environ is None else environ
    specs = specs_for(service)
    values: dict[str, Any] = {spec.name: None for spec in SPECS}
    given: set[str] = set()
    for spec in specs:
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
        given.add(spec.name)
    settings = Settings(**values)
    _check_retention(settings)
    if settings.production:
        _check_production(settings, specs, given)
    return settings


def _check_retention(settings: Settings) -> None:
    """In every environment: an inbox horizon within the broker's retention
    would let a consumer re-read an event whose inbox row is already gone."""
    if settings.retention_inbox is None or settings.broker_retention is None:
        return
    if settings.retention_inbox <= settings.broker_retention:
        raise SettingsError(
            f"GOSHOP_RETENTION_INBOX_SECONDS ({settings.retention_inbox}) must be longer than "
            f"GOSHOP_BROKER_RETENTION_SECONDS ({settings.broker_retention}): a duplicate still on the broker "
            "would find its inbox row deleted"
        )


def _check_production(settings: Settings, specs: tuple[Spec, ...], given: set[str]) -> None:
    names = {spec.name for spec in specs}
    for spec in specs:
        if spec.required_in_production and spec.name not in given:
            raise SettingsError(f"{spec.env} must be set in production (the default is for development only)")
    if "jwt_secret" in names and settings.jwt_algorithm == "HS256" and "jwt_secret" not in given:
        raise SettingsError("GOSHOP_JWT_SECRET must be set in production with HS256")
    for spec in specs:
        value = getattr(settings, spec.name)
        if spec.name == "jwt_secret" and settings.jwt_algorithm != "HS256":
            continue  # unused: the key pair signs
        if spec.secret and value in REPOSITORY_SECRETS:
            raise SettingsError(
                f"{spec.env} is a value from the repository (a development default); production refuses it"
            )
    for spec in specs:
        role_password = spec.name.startswith("db_") and spec.name.endswith("_password")
        if role_password and getattr(settings, spec.name) in REPOSITORY_DATABASE_PASSWORDS:
            raise SettingsError(f"{spec.env} is the repository's development password; production refuses it")
    if "database_url" in names:
        password = urlsplit(settings.database_url).password
        if not password or password in REPOSITORY_DATABASE_PASSWORDS:
            raise SettingsError(
                "GOSHOP_DATABASE_URL carries the repository's development password (or none); production refuses it"
            )
    if "ops_token" in names and len(settings.ops_token) < 32:
        raise SettingsError("GOSHOP_OPS_TOKEN must be a secret of 32+ characters in production")
    if "jwt_secret" in names and settings.jwt_algorithm == "HS256" and len(settings.jwt_secret.encode()) < 32:
        raise SettingsError("GOSHOP_JWT_SECRET must be at least 32 bytes in production")
    # The signing key is checked where it is loaded (goshop_users.keys).


def markdown_table() -> str:
    """Every setting as a Markdown table (the "Settings" section of docs/operations.md is this
    output; a test keeps the two equal). ``python -m goshop_common.settings``."""
    rows = ["| env | default | used by | production |", "|---|---|---|---|"]
    for spec in SPECS:
        if isinstance(spec.default, tuple):
            default = ",".join(spec.default) or "none"
        else:
            default = str(spec.default) if spec.default != "" else "unset"
        if spec.secret:
            default = f"{default} (development only)"
        used_by = ", ".join(service for service in SERVICES if service in spec.services)
        if spec.services == frozenset(SERVICES):
            used_by = "all"
        production = "**required**" if spec.required_in_production else ""
        if spec.secret:
            production = " ".join(filter(None, [production, "secret; repository values refused"]))
        production = "; ".join(filter(None, [production, spec.production_note]))
        rows.append(f"| `{spec.env}` | `{default}` | {used_by} | {production} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
