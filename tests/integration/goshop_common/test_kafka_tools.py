"""The README's Kafka tools work against the real broker (Tansu): the commands
there are taken from it and run, with the test broker's address for make
run's. Why these clients and not others: docs/development.md#kafka-tools."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import confluent_kafka
from confluent_kafka.admin import AdminClient

from goshop_common.messaging.kafka import make_consumer, make_producer
from goshop_domain.events import ORDERS_TOPIC, TOPICS

README = Path(__file__).resolve().parents[3] / "README.md"
MAKE_RUN_BOOTSTRAP = "127.0.0.1:9092"
GROUP = "goshop-payments"


def readme_commands() -> list[str]:
    """The commands of the README's Kafka tools block, a quoted newline kept."""
    section = README.read_text().split("### Kafka tools", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    commands, current = [], ""
    for line in block.splitlines():
        current = f"{current}\n{line}" if current else line
        if current.count("'") % 2 == 0:
            commands.append(current)
            current = ""
    return commands


def run(command: str, bootstrap: str) -> str:
    command = command.replace(".venv/bin/python", sys.executable).replace(MAKE_RUN_BOOTSTRAP, bootstrap)
    done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
    return done.stdout


def test_the_bundled_librdkafka_reads_the_broker_and_still_describes_groups_classically():
    # 2.2 reads the tagged fields of Tansu's ApiVersions; from 2.10 on a group
    # is described by ConsumerGroupDescribe, which Tansu answers without members.
    version = tuple(int(part) for part in confluent_kafka.libversion()[0].split(".")[:2])
    assert (2, 2) <= version < (2, 10), confluent_kafka.libversion()


def test_confluent_kafka_sees_the_brokers_topics(kafka_broker):
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    assert set(TOPICS) <= set(admin.list_topics(timeout=10).topics)


def test_the_readme_commands_list_the_group_its_offsets_and_its_member(own_broker):
    commands = readme_commands()
    assert len(commands) == 3, commands
    producer = make_producer(own_broker.bootstrap)
    producer.send(ORDERS_TOPIC, key=b"order", value=b"{}").get(timeout=10)
    producer.close()
    consumer = make_consumer(own_broker.bootstrap, GROUP, [ORDERS_TOPIC])
    try:
        deadline = time.monotonic() + 30
        committed = False
        while not committed and time.monotonic() < deadline:
            if consumer.poll(timeout_ms=200):
                consumer.commit()  # ListGroups shows a group once it has offsets
                committed = True
        assert committed
        member = consumer._coordinator._generation.member_id
        listed, offsets, described = (run(command, own_broker.bootstrap) for command in commands)
        # The consumer sends no heartbeat while the commands run; its session
        # (6 s) outlasts them.
        assert GROUP in listed
        assert ORDERS_TOPIC in offsets
        assert "'lag': 0" in offsets
        line = next(line for line in described.splitlines() if line.startswith(GROUP))
        assert member in line
        assert "STABLE" in line
    finally:
        consumer.close(autocommit=False)


def test_the_readme_commands_name_make_runs_broker():
    assert all(MAKE_RUN_BOOTSTRAP in command for command in readme_commands())
