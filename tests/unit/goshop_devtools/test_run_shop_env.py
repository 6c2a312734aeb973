"""make run and the shop.env a shell may have loaded from an earlier run."""

from __future__ import annotations

import io

from goshop_devtools.console import Console
from goshop_devtools.run import _forget_a_loaded_shop_env


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(out, "console", False, ["gateway"]), out


def test_addresses_loaded_from_a_shop_env_are_not_taken_for_this_runs_settings():
    console, out = _console()
    env = {
        "GOSHOP_DEV_SHOP_ENV": "/repo/.goshop/shop.env",
        "GOSHOP_DATABASE_URL": "postgresql://goshop:goshop@127.0.0.1:5433/goshop",
        "GOSHOP_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
        "GOSHOP_GATEWAY_URL": "http://127.0.0.1:8080",
        "GOSHOP_LOG_LEVEL": "DEBUG",
    }
    _forget_a_loaded_shop_env(console, env)
    assert env == {"GOSHOP_LOG_LEVEL": "DEBUG"}
    assert "ignoring GOSHOP_DATABASE_URL, GOSHOP_KAFKA_BOOTSTRAP, GOSHOP_GATEWAY_URL loaded from a shop.env" in (
        out.getvalue()
    )


def test_addresses_set_by_hand_are_kept():
    console, out = _console()
    env = {"GOSHOP_DATABASE_URL": "postgresql://me@db/shop"}
    _forget_a_loaded_shop_env(console, env)
    assert env == {"GOSHOP_DATABASE_URL": "postgresql://me@db/shop"}
    assert out.getvalue() == ""
