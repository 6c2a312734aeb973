import pytest

from goshop_common.settings import DEV_JWT_SECRET, DEV_OPS_TOKEN, SettingsError
from goshop_devtools.settings import PROCESSES, SPECS, settings_of

OPS = "o" * 40
DB = "postgresql://shop:s3cret-from-the-vault@db.internal:5432/goshop"

# What each process must be given in production, and nothing more: the
# production.ini files and k8s/README.md document exactly these.
PRODUCTION_ENV = {
    "users": {"GOSHOP_DATABASE_URL": DB},
    "orders": {"GOSHOP_DATABASE_URL": DB},
    "payments": {"GOSHOP_DATABASE_URL": DB},
    "ops": {"GOSHOP_DATABASE_URL": DB, "GOSHOP_OPS_TOKEN": OPS, "GOSHOP_KAFKA_BOOTSTRAP": "kafka:9092"},
    "gateway": {
        "GOSHOP_PUBLIC_URL": "https://shop.example",
        "GOSHOP_USERS_URL": "http://users:8081",
        "GOSHOP_ORDERS_URL": "http://orders:8082",
        "GOSHOP_PAYMENTS_URL": "http://payments:8083",
        "GOSHOP_OPS_URL": "http://opsassistant:8085",
    },
    "outboxer": {"GOSHOP_DATABASE_URL": DB, "GOSHOP_KAFKA_BOOTSTRAP": "kafka:9092"},
    "orders-consumer": {"GOSHOP_DATABASE_URL": DB, "GOSHOP_KAFKA_BOOTSTRAP": "kafka:9092"},
    "payments-consumer": {"GOSHOP_DATABASE_URL": DB, "GOSHOP_KAFKA_BOOTSTRAP": "kafka:9092"},
    "migrate": {"GOSHOP_DATABASE_URL": DB},
    "maintenance": {"GOSHOP_DATABASE_URL": DB},
    # The roles bootstrap: an administrator's URL and every role's password.
    "db-roles": {
        "GOSHOP_DATABASE_URL": DB,
        **{
            f"GOSHOP_DB_{role}_PASSWORD": f"{role.lower()}-from-the-vault"
            for role in ("MIGRATE", "USERS", "ORDERS", "PAYMENTS", "OUTBOXER", "OPS", "MAINTENANCE")
        },
    },
}


def production(service: str, **extra):
    return settings_of({}, environ={"GOSHOP_ENV": "production", **PRODUCTION_ENV[service], **extra}, service=service)


def test_defaults_match_the_design():
    settings = settings_of({}, environ={})
    assert settings.database_url == "postgresql://goshop:goshop@127.0.0.1:5433/goshop"
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.jwt_issuer == "goshop-users"
    assert settings.jwt_algorithm == "EdDSA"
    assert settings.access_ttl == 7200
    assert settings.refresh_ttl == 30 * 24 * 3600
    assert settings.refresh_reuse_interval <= 5
    assert settings.password_min_length == 8
    assert settings.max_body_bytes == 1024 * 1024
    assert not settings.production


def test_every_setting_is_declared_once_with_a_distinct_variable():
    envs = [spec.env for spec in SPECS]
    assert len(envs) == len(set(envs))
    names = [spec.name for spec in SPECS]
    assert len(names) == len(set(names))
    assert set(PRODUCTION_ENV) == set(PROCESSES)


def test_a_process_has_only_its_own_settings():
    gateway = settings_of({}, environ={"GOSHOP_DATABASE_URL": "not even a url"}, service="gateway")
    assert not hasattr(gateway, "database_url")  # the gateway has no database
    assert gateway.users_url == "http://127.0.0.1:8081"
    orders = settings_of({}, environ={}, service="orders")
    assert not hasattr(orders, "users_url")
    assert orders.database_url is not None
    assert not hasattr(orders, "argon2_time_cost")  # users' business


def test_a_malformed_setting_of_another_service_does_not_stop_this_one():
    settings_of({}, environ={"GOSHOP_ARGON2_TIME_COST": "lots"}, service="orders")
    with pytest.raises(SettingsError, match="GOSHOP_ARGON2_TIME_COST"):
        settings_of({}, environ={"GOSHOP_ARGON2_TIME_COST": "lots"}, service="users")


def test_an_unknown_process_is_refused():
    with pytest.raises(KeyError, match="shipping"):
        settings_of({}, {}, service="shipping")


def test_ini_value_is_used_when_the_environment_is_silent():
    settings = settings_of({"goshop.access_ttl": "900"}, environ={})
    assert settings.access_ttl == 900


def test_environment_wins_over_ini():
    settings = settings_of({"goshop.access_ttl": "900"}, environ={"GOSHOP_ACCESS_TTL_SECONDS": "60"})
    assert settings.access_ttl == 60


def test_an_empty_environment_variable_counts_as_unset():
    settings = settings_of({"goshop.access_ttl": "900"}, environ={"GOSHOP_ACCESS_TTL_SECONDS": ""})
    assert settings.access_ttl == 900


def test_trusted_proxies_none_trusts_nobody():
    assert settings_of({"goshop.trusted_proxies": "none"}, environ={}).trusted_proxies == ()
    with pytest.raises(SettingsError, match="GOSHOP_TRUSTED_PROXIES"):
        settings_of({}, environ={"GOSHOP_TRUSTED_PROXIES": "10.0.0.0/8,not-an-address"})


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("GOSHOP_ACCESS_TTL_SECONDS", "soon", "GOSHOP_ACCESS_TTL_SECONDS"),
        ("GOSHOP_ACCESS_TTL_SECONDS", "0", "GOSHOP_ACCESS_TTL_SECONDS"),
        ("GOSHOP_REFRESH_REUSE_INTERVAL_SECONDS", "-1", "GOSHOP_REFRESH_REUSE_INTERVAL_SECONDS"),
        ("GOSHOP_JWT_ALGORITHM", "none", "GOSHOP_JWT_ALGORITHM"),
        ("GOSHOP_ENV", "prod", "GOSHOP_ENV"),
        ("GOSHOP_LOG_LEVEL", "LOUD", "GOSHOP_LOG_LEVEL"),
    ],
)
def test_a_malformed_setting_fails_at_start_naming_it(env, value, named):
    with pytest.raises(SettingsError, match=named):
        settings_of({}, environ={env: value})


def test_a_malformed_ini_setting_names_the_ini_key():
    with pytest.raises(SettingsError, match=r"goshop\.db_pool_size"):
        settings_of({"goshop.db_pool_size": "many"}, environ={})


@pytest.mark.parametrize("service", sorted(PRODUCTION_ENV))
def test_production_starts_with_only_the_secrets_the_service_uses(service):
    settings = production(service)
    assert settings.production


@pytest.mark.parametrize(
    ("service", "missing"),
    [(service, env) for service, envs in sorted(PRODUCTION_ENV.items()) for env in envs],
)
def test_production_names_each_missing_setting(service, missing):
    environ = {"GOSHOP_ENV": "production", **PRODUCTION_ENV[service]}
    del environ[missing]
    with pytest.raises(SettingsError, match=missing):
        settings_of({}, environ=environ, service=service)


def test_production_accepts_a_required_setting_from_the_ini():
    settings = settings_of({"goshop.database_url": DB}, environ={"GOSHOP_ENV": "production"}, service="payments")
    assert settings.database_url == DB


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://goshop:goshop@db.internal:5432/goshop",
        "postgresql://goshop:goshop@127.0.0.1:5433/goshop",
        "postgresql://shop@db.internal:5432/goshop",
    ],
)
def test_production_refuses_the_repositorys_database_password(url):
    with pytest.raises(SettingsError, match="GOSHOP_DATABASE_URL"):
        production("orders", GOSHOP_DATABASE_URL=url)


def test_production_refuses_the_development_password_for_a_database_role():
    with pytest.raises(SettingsError, match="GOSHOP_DB_OPS_PASSWORD is the repository's development password"):
        production("db-roles", GOSHOP_DB_OPS_PASSWORD="goshop")


@pytest.mark.parametrize("token", [DEV_OPS_TOKEN, "dev-only-ops-token-for-kind-do-not-use-in-production"])
def test_production_refuses_an_ops_token_from_the_repository(token):
    with pytest.raises(SettingsError, match="GOSHOP_OPS_TOKEN is a value from the repository"):
        production("ops", GOSHOP_OPS_TOKEN=token)


def test_production_refuses_a_short_ops_token():
    with pytest.raises(SettingsError, match="GOSHOP_OPS_TOKEN must be a secret of 32"):
        production("ops", GOSHOP_OPS_TOKEN="short")


def test_production_ignores_the_unused_development_hs256_secret():
    # EdDSA signs: the shared secret's development default is not in use.
    assert production("users").jwt_secret == DEV_JWT_SECRET


def test_production_refuses_the_development_hs256_secret():
    with pytest.raises(SettingsError, match="GOSHOP_JWT_SECRET must be set"):
        production("users", GOSHOP_JWT_ALGORITHM="HS256")
    with pytest.raises(SettingsError, match="development default"):
        production("orders", GOSHOP_JWT_ALGORITHM="HS256", GOSHOP_JWT_SECRET=DEV_JWT_SECRET)


def test_production_refuses_a_short_hs256_secret():
    with pytest.raises(SettingsError, match="32 bytes"):
        production("gateway", GOSHOP_JWT_ALGORITHM="HS256", GOSHOP_JWT_SECRET="short")


def test_development_accepts_the_development_secret():
    settings = settings_of({}, environ={"GOSHOP_JWT_ALGORITHM": "HS256"})
    assert settings.jwt_secret == DEV_JWT_SECRET


def test_the_operations_guide_lists_every_setting_as_declared():
    from pathlib import Path

    from goshop_devtools.settings import markdown_table

    guide = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
    block = guide.split("<!-- settings-table -->\n", 1)[1].split("\n<!-- /settings-table -->", 1)[0]
    assert block == markdown_table(), (
        "docs/operations.md's settings table is stale: paste `python -m goshop_devtools.settings`"
    )


@pytest.mark.parametrize(("given", "taken"), [("usd", "USD"), (" EUR ", "EUR")])
def test_the_default_currency_is_an_iso_4217_code_in_either_case(given, taken):
    assert settings_of({}, environ={"GOSHOP_DEFAULT_CURRENCY": given}, service="orders").default_currency == taken


@pytest.mark.parametrize("given", ["ABC", "XXX", "RUBL"])
def test_a_default_currency_outside_iso_4217_is_refused(given):
    with pytest.raises(SettingsError, match="GOSHOP_DEFAULT_CURRENCY: not an ISO 4217 currency code"):
        settings_of({}, environ={"GOSHOP_DEFAULT_CURRENCY": given}, service="orders")


def test_production_serves_no_ops_console_until_its_origin_is_set():
    from goshop_ops.console import served

    assert served(production("ops")) is False
    assert served(production("ops", GOSHOP_OPS_CONSOLE_ORIGIN="https://ops.example.com")) is True
    # Development serves it wherever it is opened.
    assert served(settings_of({}, environ={}, service="ops")) is True


def test_production_refuses_an_ops_console_origin_that_is_not_https():
    with pytest.raises(SettingsError, match="GOSHOP_OPS_CONSOLE_ORIGIN must be an https:// origin"):
        production("ops", GOSHOP_OPS_CONSOLE_ORIGIN="http://ops.example.com")


@pytest.mark.parametrize("value", ["https://ops.example.com/console", "ops.example.com", "https://u:p@ops.example.com"])
def test_the_ops_console_origin_is_an_origin_and_nothing_more(value):
    with pytest.raises(SettingsError, match="GOSHOP_OPS_CONSOLE_ORIGIN"):
        settings_of({}, environ={"GOSHOP_OPS_CONSOLE_ORIGIN": value}, service="ops")


def test_the_ops_console_origin_is_kept_as_a_browser_sends_it():
    ops = settings_of({}, environ={"GOSHOP_OPS_CONSOLE_ORIGIN": "HTTPS://Ops.Example.com:8443/"}, service="ops")
    assert ops.console_origin == "https://ops.example.com:8443"
