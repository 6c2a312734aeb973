"""The ops assistant's settings: a database, the broker (it reads and replays
the dead-letter topics), HTTP, its LLM and the operator's token."""

from __future__ import annotations

import dataclasses

from goshop_common.settings import (
    DEV_OPS_TOKEN,
    BrokerSettings,
    DatabaseSettings,
    HttpSettings,
    SettingsError,
    any_float,
    positive_float,
    setting,
    text,
)


@dataclasses.dataclass(frozen=True)
class OpsSettings(DatabaseSettings, BrokerSettings, HttpSettings):
    # Unset OLLAMA_URL: it explains by rules, without an LLM.
    ollama_url: str = setting("OLLAMA_URL", text, "")
    ollama_model: str = setting("OLLAMA_MODEL", text, "llama3.2")
    # The gateway waits this much longer on explain (goshop_gateway.settings).
    ollama_timeout: float = setting("GOSHOP_OLLAMA_TIMEOUT_SECONDS", positive_float, 30.0)
    ollama_temperature: float = setting("GOSHOP_OLLAMA_TEMPERATURE", any_float, 0.2)
    # The operator's bearer token for /v1/ops/*.
    ops_token: str = setting(
        "GOSHOP_OPS_TOKEN",
        text,
        DEV_OPS_TOKEN,
        secret=True,
        required_in_production=True,
        production_note="≥ 32 characters",
    )

    def check(self, given: frozenset[str]) -> None:
        super().check(given)
        if self.production and len(self.ops_token) < 32:
            raise SettingsError("GOSHOP_OPS_TOKEN must be a secret of 32+ characters in production")
