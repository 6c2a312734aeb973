"""Events between services: Kafka clients and topics (``kafka``), the outbox a
service writes its events to (``outbox``), the inbox that makes consuming
idempotent (``inbox``), the consumer loop (``consumer``) and what every worker
process does around its loop (``worker``)."""
