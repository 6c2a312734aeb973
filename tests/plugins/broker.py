"""Kafka-protocol broker fixtures (filled in with the saga work)."""
