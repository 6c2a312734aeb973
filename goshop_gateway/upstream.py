"""The gateway's client for its upstreams: pooled keep-alive connections,
connect and read timeouts, and hop-by-hop headers kept out in both directions."""

from __future__ import annotations

import dataclasses

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Recomputed for the response we write, or set by the client library.
RECOMPUTED = frozenset({"content-length", "host", "date", "server"})


class UpstreamFailure(Exception):
    """The upstream could not answer: ``status`` is what the gateway says instead."""

    def __init__(self, upstream: str, status: int, message: str):
        super().__init__(f"{upstream}: {message}")
        self.upstream = upstream
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def end_to_end(headers) -> list[tuple[str, str]]:
    """The headers without hop-by-hop ones, including any the Connection header names."""
    items = list(headers.items())
    named = set()
    for name, value in items:
        if name.lower() == "connection":
            named |= {token.strip().lower() for token in value.split(",")}
    dropped = HOP_BY_HOP | RECOMPUTED | named
    return [(name, value) for name, value in items if name.lower() not in dropped]


class Upstreams:
    def __init__(self, urls: dict[str, str], connect_timeout: float, read_timeout: float, pool_size: int = 16):
        self.urls = {name: url.rstrip("/") for name, url in urls.items()}
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        # A failed connect never reached the upstream, so retrying it once is
        # safe even for a POST; nothing else is retried.
        self.retries = urllib3.Retry(
            total=1, connect=1, read=0, status=0, other=0, redirect=False, raise_on_status=False
        )
        # One connection pool per upstream, asked directly: a PoolManager
        # parses each URL and looks its pool up again on every request (a
        # fifth of the client's CPU per call). Each upstream's path prefix,
        # if its URL has one, goes before every path.
        self.pool_size = pool_size
        self.pools = self._new_pools()

    def _new_pools(self) -> dict[str, tuple[urllib3.HTTPConnectionPool, str]]:
        pools = {}
        for name, url in self.urls.items():
            prefix = (urllib3.util.parse_url(url).path or "").rstrip("/")
            pools[name] = (urllib3.connection_from_url(url, maxsize=self.pool_size, retries=self.retries), prefix)
        return pools

    def request(
        self,
        upstream: str,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        timeout: urllib3.Timeout | None = None,
    ) -> UpstreamResponse:
        pool, prefix = self.pools[upstream]
        try:
            response = pool.urlopen(
                method,
                prefix + path,
                body=body or None,
                headers=urllib3.HTTPHeaderDict(headers),
                redirect=False,
                assert_same_host=False,
                timeout=timeout or self.timeout,
                decode_content=False,
                preload_content=True,
            )
        except MaxRetryError as exc:
            raise self._failure(upstream, exc.reason) from None
        except (ReadTimeoutError, ConnectTimeoutError, NewConnectionError, ProtocolError, OSError) as exc:
            raise self._failure(upstream, exc) from None
        return UpstreamResponse(response.status, end_to_end(response.headers), response.data)

    @staticmethod
    def _failure(upstream: str, reason) -> UpstreamFailure:
        # NewConnectionError subclasses ConnectTimeoutError in urllib3 2: test it first.
        if isinstance(reason, NewConnectionError):
            return UpstreamFailure(upstream, 502, "upstream unavailable")
        if isinstance(reason, (ReadTimeoutError, ConnectTimeoutError, TimeoutError)):
            return UpstreamFailure(upstream, 504, "upstream timeout")
        return UpstreamFailure(upstream, 502, "upstream unavailable")

    def close(self) -> None:
        """Drop every kept-alive connection; the next request opens a new one."""
        pools, self.pools = self.pools, self._new_pools()
        for pool, _prefix in pools.values():
            pool.close()
