"""The Kafka client defaults are Apache Kafka's choices; a broker profile
(goshop_common.messaging.broker_profiles) changes exactly what it lists."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from kafka import KafkaProducer

from goshop_common.messaging import broker_profiles
from goshop_common.messaging.kafka import (
    CONSUMER_DEFAULTS,
    PRODUCER_DEFAULTS,
    broker_profile,
    consumer_config,
    producer_config,
)
from goshop_common.settings import BrokerSettings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[3]

# What the tansu profile changes, and nothing else (its docstring says why).
TANSU_PRODUCER = {"enable_idempotence": False, "max_in_flight_requests_per_connection": 1}
TANSU_CONSUMER = {"fetch_max_wait_ms": 100}


@pytest.fixture
def profile(monkeypatch):
    def select(name: str | None) -> None:
        if name is None:
            monkeypatch.delenv("GOSHOP_KAFKA_BROKER_PROFILE", raising=False)
        else:
            monkeypatch.setenv("GOSHOP_KAFKA_BROKER_PROFILE", name)
        monkeypatch.delenv("GOSHOP_ENV", raising=False)

    return select


def test_the_defaults_are_what_apache_kafka_wants():
    assert PRODUCER_DEFAULTS["enable_idempotence"] is True
    assert PRODUCER_DEFAULTS["acks"] == "all"
    assert PRODUCER_DEFAULTS["max_in_flight_requests_per_connection"] <= 5
    assert "retries" not in PRODUCER_DEFAULTS, "kafka-python's default: as many as delivery_timeout_ms allows"
    assert CONSUMER_DEFAULTS["fetch_max_wait_ms"] == 500
    assert CONSUMER_DEFAULTS["enable_auto_commit"] is False


@pytest.mark.parametrize("name", [None, "", "kafka"])
def test_the_kafka_profile_is_the_default_and_changes_nothing(profile, name):
    profile(name)
    assert broker_profile() == "kafka"
    assert producer_config() == PRODUCER_DEFAULTS
    assert consumer_config() == CONSUMER_DEFAULTS


def test_kafka_python_keeps_the_producer_idempotent(profile):
    # An option that conflicts with idempotence would turn it off (with a
    # warning) or raise; api_version given, the constructor connects to nothing.
    profile(None)
    producer = KafkaProducer(bootstrap_servers="127.0.0.1:1", api_version=(3, 0), **producer_config())
    try:
        assert producer.config["enable_idempotence"] is True
        assert producer.config["acks"] == -1
    finally:
        producer.close(timeout=0)


def _changed(config: dict, defaults: dict) -> dict:
    return {key: value for key, value in config.items() if defaults.get(key, object()) != value}


def test_the_tansu_profile_changes_exactly_its_listed_options(profile):
    profile("tansu")
    assert _changed(producer_config(), PRODUCER_DEFAULTS) == TANSU_PRODUCER
    assert _changed(consumer_config(), CONSUMER_DEFAULTS) == TANSU_CONSUMER
    # A caller's own override still wins over the profile.
    assert consumer_config(fetch_max_wait_ms=10)["fetch_max_wait_ms"] == 10


def test_every_profile_option_is_explained_in_the_one_docstring():
    doc = broker_profiles.__doc__
    for table in (broker_profiles.PRODUCER_OVERRIDES, broker_profiles.CONSUMER_OVERRIDES):
        assert set(table) == set(broker_profiles.PROFILES)
        assert not table[broker_profiles.KAFKA]
        for name, options in table.items():
            for key, value in options.items():
                assert f"``{key}: {value}``" in doc, f"{name}: {key} is not explained"


def test_an_unknown_profile_is_refused(profile):
    profile("kafak")
    with pytest.raises(ValueError, match="GOSHOP_KAFKA_BROKER_PROFILE"):
        producer_config()
    with pytest.raises(SettingsError, match="GOSHOP_KAFKA_BROKER_PROFILE"):
        load_settings(BrokerSettings, {}, {"GOSHOP_KAFKA_BROKER_PROFILE": "kafak"})


def test_production_refuses_a_development_broker_profile():
    with pytest.raises(ValueError, match="production refuses"):
        broker_profile({"GOSHOP_ENV": "production", "GOSHOP_KAFKA_BROKER_PROFILE": "tansu"})
    assert broker_profile({"GOSHOP_ENV": "production"}) == "kafka"
    assert broker_profile({"GOSHOP_ENV": "development", "GOSHOP_KAFKA_BROKER_PROFILE": "tansu"}) == "tansu"


def test_settings_declare_the_same_profiles():
    field = next(f for f in dataclasses.fields(BrokerSettings) if f.name == "kafka_broker_profile")
    parse = field.metadata["parse"]
    assert field.default == broker_profiles.KAFKA
    for name in broker_profiles.PROFILES:
        assert parse(name) == name
    with pytest.raises(ValueError, match="must be one of"):
        parse("kafak")


def test_the_deployments_run_on_the_kafka_defaults():
    for tree in ("k8s", "docker"):
        for path in (ROOT / tree).rglob("*"):
            if path.is_file() and path.suffix in {".yaml", ".yml", ".env", ""}:
                text = path.read_text(errors="replace")
                assert "GOSHOP_KAFKA_BROKER_PROFILE" not in text, f"{path.relative_to(ROOT)} leaves the Kafka defaults"
