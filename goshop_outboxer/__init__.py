"""The outboxer: relays every service's outbox table to Kafka.

``python -m goshop_outboxer`` runs the relay loop and serves ``/live`` and
``/ready`` (database and broker reachable) on :8084.
"""
