"""What a process tells its operators: Prometheus metrics (``metrics``) and
JSON or console logs (``logs``)."""
