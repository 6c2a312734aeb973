"""kafka-python checks every record batch's CRC32C; goshop ships the C
implementation so that it does not fall back to pure Python."""

import crc32c
from kafka.record import util


def test_kafka_python_checks_record_batches_with_the_c_crc32c():
    # kafka-python picks its implementation at import; the private name is
    # the only place that says which one it picked.
    assert util._crc32c is crc32c.crc32c
    assert util.calc_crc32c(memoryview(b"123456789")) == 0xE3069283  # RFC 3720's check value
