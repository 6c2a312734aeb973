"""The client's address as seen through trusted proxies.

Behind the gateway every request comes from the gateway's address; counting
failed logins per address would then lock out everyone at once. A proxy we
trust appends the address it saw to X-Forwarded-For; walking that list from the
right, the first address we do not trust is the client. An untrusted peer's
X-Forwarded-For is ignored, so a client cannot choose its own address.

waitress cannot make this decision for us: its ``trusted_proxy`` is one
address or ``*``, never a CIDR, so the ini files let the header through
(``clear_untrusted_proxy_headers = false``) and this module decides against
``GOSHOP_TRUSTED_PROXIES``.

Addresses come out canonical (``ipaddress``): an IPv4-mapped IPv6 address is
its IPv4 address, so one client cannot count twice by switching notation.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyramid.config import Configurator
    from pyramid.request import Request

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# One IPv6 customer usually holds a whole /64: counting single addresses would
# hand an attacker 2**64 fresh budgets.
IPV6_CLIENT_PREFIX = 64


# Keyed by the settings' tuple, which is the same on every request: the
# networks are parsed once, not per request.
@functools.lru_cache(maxsize=32)
def _networks(trusted: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in trusted)


# Pure and called for every request with the same few peers and proxies:
# parsed once each (bounded, so a client's made-up hops cannot grow it).
@functools.lru_cache(maxsize=1024)
def parse_address(raw: str | None) -> Address | None:
    """One hop of X-Forwarded-For (or a peer address) as an address, or None
    when it is not one. Accepts ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``,
    ``[2001:db8::1]:80``, quoted forms, and drops an IPv6 zone."""
    text = (raw or "").strip().strip('"').strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port; IPv6 has two colons or more
        text = text.partition(":")[0]
    text = text.partition("%")[0]
    try:
        # Also refuses what is not an address at all ("unknown", a hostname).
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # ::ffff:1.2.3.4 is 1.2.3.4: one client, one throttling key, one trust rule.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: Address, trusted: tuple[str, ...]) -> bool:
    return any(address in network for network in _networks(trusted) if network.version == address.version)


def peer_is_trusted(remote_addr: str | None, trusted: tuple[str, ...]) -> bool:
    """Whether the peer itself is a trusted proxy: what it says of the
    request (a trace it continues, goshop_common.observability.tracing) is
    believed as its X-Forwarded-For is."""
    address = parse_address(remote_addr)
    return address is not None and _is_trusted(address, trusted)


def client_ip(remote_addr: str | None, forwarded_for: str | None, trusted: tuple[str, ...]) -> str | None:
    """The canonical address of the client, or None when the peer has none.

    A hop that is not an address, coming from a trusted proxy, ends the walk
    at that proxy: garbage must never become the client (it would be a fresh
    throttling key per request), and the proxy is the last address we know.
    """
    candidate = parse_address(remote_addr)
    if candidate is None:
        return None
    hops = [hop for hop in (forwarded_for or "").split(",") if hop.strip()]
    # From the right: each proxy appends what it saw, so the last hop is the
    # one the nearest proxy vouches for; anything left of an untrusted hop
    # may have been written by the client.
    while hops and _is_trusted(candidate, trusted):
        hop = parse_address(hops.pop())
        if hop is None:
            break
        candidate = hop
    return str(candidate)


def client_network(address: str | None) -> str | None:
    """What throttling counts for ``address``: the address itself for IPv4,
    its /64 for IPv6."""
    parsed = parse_address(address)
    if parsed is None:
        return None
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(parsed)


def _request_client_ip(request: Request) -> str | None:
    # REMOTE_ADDR is the peer's own address: the ini files give waitress no
    # trusted_proxy, so it rewrites nothing from the header.
    return client_ip(
        request.remote_addr, request.headers.get("X-Forwarded-For"), request.registry.goshop_settings.trusted_proxies
    )


def includeme(config: Configurator) -> None:
    config.add_request_method(_request_client_ip, "client_ip", reify=True)
