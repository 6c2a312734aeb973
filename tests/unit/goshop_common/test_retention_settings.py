"""The maintenance worker's settings: the retention horizons, and the inbox's
dedupe horizon held longer than the broker keeps a record."""

import pytest

from goshop_common.settings import SettingsError
from goshop_devtools.settings import settings_of

DB = "postgresql://shop:s3cret-from-the-vault@db.internal:5432/goshop"


def test_the_defaults_keep_inbox_rows_longer_than_the_broker_keeps_records():
    settings = settings_of({}, environ={}, service="maintenance")
    assert settings.retention_inbox > settings.broker_retention
    assert settings.idempotency_key_ttl == 24 * 3600
    assert settings.login_failure_window == 900
    assert settings.retention_outbox == 7 * 24 * 3600
    assert settings.retention_sessions == 30 * 24 * 3600


@pytest.mark.parametrize("inbox", ["1209600", "86400"])
def test_an_inbox_horizon_not_longer_than_the_broker_retention_is_refused(inbox):
    environ = {"GOSHOP_BROKER_RETENTION_SECONDS": "1209600", "GOSHOP_RETENTION_INBOX_SECONDS": inbox}
    with pytest.raises(SettingsError, match=r"GOSHOP_RETENTION_INBOX_SECONDS .* longer than GOSHOP_BROKER_RETENTION"):
        settings_of({}, environ=environ, service="maintenance")


def test_a_longer_broker_retention_needs_a_longer_inbox_horizon_too():
    environ = {"GOSHOP_BROKER_RETENTION_SECONDS": str(60 * 24 * 3600)}
    with pytest.raises(SettingsError, match="GOSHOP_RETENTION_INBOX_SECONDS"):
        settings_of({}, environ=environ, service="maintenance")
    environ["GOSHOP_RETENTION_INBOX_SECONDS"] = str(61 * 24 * 3600)
    assert settings_of({}, environ=environ, service="maintenance").retention_inbox == 61 * 24 * 3600


def test_the_other_processes_neither_read_nor_check_the_retention_settings():
    environ = {"GOSHOP_RETENTION_INBOX_SECONDS": "1"}
    orders = settings_of({}, environ=environ, service="orders")
    assert not hasattr(orders, "retention_inbox")
    assert orders.idempotency_key_ttl == 24 * 3600


def test_production_maintenance_needs_only_the_database_url():
    settings = settings_of({}, environ={"GOSHOP_ENV": "production", "GOSHOP_DATABASE_URL": DB}, service="maintenance")
    assert settings.production
    assert not hasattr(settings, "kafka_bootstrap")
