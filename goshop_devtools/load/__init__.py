"""``make load``: Locust drives a realistic mix of customers through the
gateway, then the saga's invariants are checked (``python -m
goshop_devtools.load``). Needs the ``[load]`` (or ``[dev]``) extra."""
