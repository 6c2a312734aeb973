"""The ops assistant's settings: a database, the broker (it reads and replays
the dead-letter topics), HTTP, its LLM, the operator's token and its console
(the origin it is served at, how long a sign-in lasts, where its health strip
asks the shop's processes)."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

from goshop_common.settings import (
    DEV_OPS_TOKEN,
    BrokerSettings,
    DatabaseSettings,
    HttpSettings,
    SettingsError,
    any_float,
    http_url,
    positive_float,
    positive_int,
    setting,
    text,
)


def origin(raw: str) -> str:
    """A web origin, ``scheme://host[:port]``: what a browser sends as ``Origin``."""
    url = http_url(raw)
    parts = urlsplit(url)
    if parts.path or parts.username or parts.password:
        raise ValueError(f"must be an origin, scheme://host[:port], without a path; got {raw.strip()!r}")
    return f"{parts.scheme}://{parts.netloc}".lower()


def named_urls(raw: str) -> tuple[tuple[str, str], ...]:
    """``name=url,name=url``: the processes the console's health strip asks."""
    pairs = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name, sep, url = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"each entry must be name=url; got {part!r}")
        pairs.append((name.strip(), http_url(url)))
    return tuple(pairs)


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

    # The public origin operators open the console at (goshop_ops.console),
    # https://ops.example.com. Production serves the console only when it is
    # set, and only over https; where it is set, every form must be posted
    # from it. Unset in development: served, posts checked by token alone.
    console_origin: str = setting(
        "GOSHOP_OPS_CONSOLE_ORIGIN",
        origin,
        "",
        production_note="unset: the console is off; set: https only",
    )
    # How long a console sign-in lasts, idle or not, before the token is asked again.
    console_session_seconds: int = setting("GOSHOP_OPS_CONSOLE_SESSION_SECONDS", positive_int, 8 * 3600)
    # The health strip: each process's /ready, and the /metrics of those that
    # export the outbox backlog and consumer lag (name=url, comma-separated).
    ready_urls: tuple[tuple[str, str], ...] = setting("GOSHOP_OPS_READY_URLS", named_urls, ())
    metrics_urls: tuple[tuple[str, str], ...] = setting("GOSHOP_OPS_METRICS_URLS", named_urls, ())

    def check(self, given: frozenset[str]) -> None:
        super().check(given)
        if self.production and len(self.ops_token) < 32:
            raise SettingsError("GOSHOP_OPS_TOKEN must be a secret of 32+ characters in production")
        if self.production and self.console_origin and not self.console_origin.startswith("https://"):
            raise SettingsError("GOSHOP_OPS_CONSOLE_ORIGIN must be an https:// origin in production")
