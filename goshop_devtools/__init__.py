"""Development tooling, not part of any image: the embedded PostgreSQL and
Kafka-protocol broker the tests and ``make run`` start, and ``make run``'s
supervisor. Needs the ``[embedded]`` (or ``[dev]``) extra."""
