"""The maintenance worker: deletes what every service's retention rules say
has expired (goshop_<svc>/retention.py, goshop_common.db.retention), a small
batch at a time, every ``GOSHOP_RETENTION_INTERVAL_SECONDS``.

``python -m goshop_maintenance`` (health and metrics on :8088), ``--once`` for
a single pass (a CronJob, or by hand).
"""
