import pytest

from goshop_common.settings import DEV_JWT_SECRET, DEV_OPS_TOKEN, SettingsError, load_settings

OPS = "o" * 40


def test_defaults_match_the_design():
    settings = load_settings({}, environ={})
    assert settings.database_url == "postgresql://goshop:goshop@127.0.0.1:5433/goshop"
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.jwt_issuer == "goshop-users"
    assert settings.jwt_algorithm == "EdDSA"
    assert settings.access_ttl == 7200
    assert settings.refresh_ttl == 30 * 24 * 3600
    assert settings.password_min_length == 8
    assert settings.max_body_bytes == 1024 * 1024
    assert not settings.production


def test_ini_value_is_used_when_the_environment_is_silent():
    settings = load_settings({"goshop.access_ttl": "900"}, environ={})
    assert settings.access_ttl == 900


def test_environment_wins_over_ini():
    settings = load_settings({"goshop.access_ttl": "900"}, environ={"GOSHOP_ACCESS_TTL_SECONDS": "60"})
    assert settings.access_ttl == 60


def test_an_empty_environment_variable_counts_as_unset():
    settings = load_settings({"goshop.access_ttl": "900"}, environ={"GOSHOP_ACCESS_TTL_SECONDS": ""})
    assert settings.access_ttl == 900


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
        load_settings({}, environ={env: value})


def test_a_malformed_ini_setting_names_the_ini_key():
    with pytest.raises(SettingsError, match=r"goshop\.db_pool_size"):
        load_settings({"goshop.db_pool_size": "many"}, environ={})


def test_production_refuses_the_development_hs256_secret():
    with pytest.raises(SettingsError, match="development default"):
        load_settings(
            {}, environ={"GOSHOP_ENV": "production", "GOSHOP_OPS_TOKEN": OPS, "GOSHOP_JWT_ALGORITHM": "HS256"}
        )
    with pytest.raises(SettingsError, match="development default"):
        load_settings(
            {},
            environ={
                "GOSHOP_ENV": "production",
                "GOSHOP_OPS_TOKEN": OPS,
                "GOSHOP_JWT_ALGORITHM": "HS256",
                "GOSHOP_JWT_SECRET": DEV_JWT_SECRET,
            },
        )


def test_production_refuses_a_short_hs256_secret():
    with pytest.raises(SettingsError, match="32 bytes"):
        load_settings(
            {},
            environ={
                "GOSHOP_ENV": "production",
                "GOSHOP_OPS_TOKEN": OPS,
                "GOSHOP_JWT_ALGORITHM": "HS256",
                "GOSHOP_JWT_SECRET": "short",
            },
        )


def test_development_accepts_the_development_secret():
    settings = load_settings({}, environ={"GOSHOP_JWT_ALGORITHM": "HS256"})
    assert settings.jwt_secret == DEV_JWT_SECRET


@pytest.mark.parametrize("token", [None, DEV_OPS_TOKEN, "short"])
def test_production_refuses_a_missing_development_or_short_ops_token(token):
    environ = {"GOSHOP_ENV": "production"}
    if token:
        environ["GOSHOP_OPS_TOKEN"] = token
    with pytest.raises(SettingsError, match="GOSHOP_OPS_TOKEN"):
        load_settings({}, environ=environ)
