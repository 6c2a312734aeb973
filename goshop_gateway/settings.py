"""The gateway's settings: HTTP, token checks, the money bounds of the order
bodies it checks before forwarding, and its upstreams."""

from __future__ import annotations

import dataclasses

from goshop_common.settings import HttpSettings, TokenVerifierSettings, http_url, positive_float, setting, text
from goshop_domain.settings import OrderMoneySettings


@dataclasses.dataclass(frozen=True)
class GatewaySettings(HttpSettings, TokenVerifierSettings, OrderMoneySettings):
    # The shop's address as its clients know it: every Location the gateway
    # answers starts with it, whatever Host a client sent.
    public_url: str = setting("GOSHOP_PUBLIC_URL", http_url, "http://127.0.0.1:8080", required_in_production=True)
    # The gateway's upstreams and how long it waits for them.
    users_url: str = setting("GOSHOP_USERS_URL", text, "http://127.0.0.1:8081", required_in_production=True)
    orders_url: str = setting("GOSHOP_ORDERS_URL", text, "http://127.0.0.1:8082", required_in_production=True)
    payments_url: str = setting("GOSHOP_PAYMENTS_URL", text, "http://127.0.0.1:8083", required_in_production=True)
    ops_url: str = setting("GOSHOP_OPS_URL", text, "http://127.0.0.1:8085", required_in_production=True)
    upstream_connect_timeout: float = setting("GOSHOP_UPSTREAM_CONNECT_TIMEOUT_SECONDS", positive_float, 1.0)
    upstream_read_timeout: float = setting("GOSHOP_UPSTREAM_READ_TIMEOUT_SECONDS", positive_float, 10.0)
    # The gateway waits this much longer on explain, which waits for the ops
    # assistant's LLM (the same variable as goshop_ops.settings').
    ollama_timeout: float = setting("GOSHOP_OLLAMA_TIMEOUT_SECONDS", positive_float, 30.0)
