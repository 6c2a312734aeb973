"""The client's address as seen through trusted proxies.

Behind the gateway every request comes from the gateway's address; counting
failed logins per address would then lock out everyone at once. A proxy we
trust appends the address it saw to X-Forwarded-For; walking that list from the
right, the first address we do not trust is the client. An untrusted peer's
X-Forwarded-For is ignored, so a client cannot choose its own address.
"""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=32)
def _networks(trusted: tuple[str, ...]):
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in trusted)


def _is_trusted(address: str, trusted: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(trusted))


def client_ip(remote_addr: str | None, forwarded_for: str | None, trusted: tuple[str, ...]) -> str | None:
    hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
    candidate = remote_addr
    while candidate is not None and _is_trusted(candidate, trusted) and hops:
        candidate = hops.pop()
    return candidate


def _request_client_ip(request) -> str | None:
    return client_ip(
        request.remote_addr, request.headers.get("X-Forwarded-For"), request.registry.goshop_settings.trusted_proxies
    )


def includeme(config) -> None:
    config.add_request_method(_request_client_ip, "client_ip", reify=True)
