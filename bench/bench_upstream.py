"""The gateway's upstream client (goshop_gateway.upstream: sockets and
httptools) against what it replaced: urllib3's ``HTTPConnectionPool.urlopen``
with the options the gateway used, its answer's headers filtered the same way.

    .venv/bin/python bench/bench_upstream.py

One real waitress upstream in a child process (its CPU is not counted)
answers a checkout-sized ``POST /v1/orders`` with a checkout-sized 201. One
thread in this process forwards it over one kept-alive connection per client;
the figure is this process's CPU per forwarded call (user + sys), then wall
time per call, the medians of interleaved rounds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "9"))
CALLS = 1000
WARM_UP = 300

# What the gateway's checkout view forwards (goshop_gateway.views.forward_headers).
HEADERS = [
    ("Authorization", "Bearer " + "x" * 400),
    ("Accept", "application/json"),
    ("User-Agent", "bench/1"),
    ("Idempotency-Key", "0b9d2c3e-0f55-4a37-9a1f-3a4f1c2b9e10"),
    ("X-Request-ID", "5f0c3e7a9b2d4e6f8a1b3c5d7e9f0a2b"),
    ("X-Forwarded-For", "192.0.2.10"),
    ("X-Forwarded-Proto", "http"),
    ("Content-Type", "application/json"),
]
BODY = json.dumps({"amount_cents": 19901, "currency": "RUB"}).encode()


def child() -> None:
    """The upstream: waitress answering every request as orders answers a checkout."""
    import waitress

    h.quiet_logging()
    answer = json.dumps(
        {
            "id": "1c6b8f0e-3d2a-4b5c-9e7f-0a1b2c3d4e5f",
            "status": "pending_payment",
            "amount_cents": 19901,
            "currency": "RUB",
            "created_at": "2026-12-01T20:00:00+00:00",
            "updated_at": "2026-12-01T20:00:00+00:00",
        }
    ).encode()

    def app(environ, start_response):
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response(
            "201 Created",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(answer))),
                ("Location", "/v1/orders/1c6b8f0e-3d2a-4b5c-9e7f-0a1b2c3d4e5f"),
                ("X-Request-ID", environ.get("HTTP_X_REQUEST_ID", "")),
            ],
        )
        return [answer]

    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=2)
    print(server.effective_port, flush=True)
    server.run()


def goshop_client(url: str):
    from goshop_gateway.upstream import Upstreams

    upstreams = Upstreams({"orders": url}, connect_timeout=1.0, read_timeout=10.0, public_url="http://127.0.0.1:8080")

    def call() -> int:
        return upstreams.request("orders", "POST", "/v1/orders", HEADERS, BODY).status

    return call, upstreams.close


def urllib3_client(url: str):
    """The gateway's call before goshop_gateway.upstream, option for option."""
    import urllib3

    from goshop_gateway.upstream import end_to_end

    timeout = urllib3.Timeout(connect=1.0, read=10.0)
    retries = urllib3.Retry(total=1, connect=1, read=0, status=0, other=0, redirect=False, raise_on_status=False)
    pool = urllib3.connection_from_url(url, maxsize=16, retries=retries)

    def call() -> int:
        response = pool.urlopen(
            "POST",
            "/v1/orders",
            body=BODY,
            headers=urllib3.HTTPHeaderDict(HEADERS),
            redirect=False,
            assert_same_host=False,
            timeout=timeout,
            decode_content=False,
            preload_content=True,
        )
        end_to_end(response.headers)
        response.data  # noqa: B018 - read as the gateway read it
        return response.status

    return call, pool.close


def run(call) -> tuple[float, float]:
    """(CPU microseconds per call, wall microseconds per call) of one batch."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(CALLS):
        if call() != 201:
            raise AssertionError("the upstream did not answer 201")
    return (time.process_time() - cpu) / CALLS * 1e6, (time.perf_counter() - wall) / CALLS * 1e6


def main() -> None:
    print(h.background_load(), flush=True)
    upstream = subprocess.Popen([sys.executable, __file__, "--child"], stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{upstream.stdout.readline().strip()}"
        clients = {"goshop client (httptools)": goshop_client(url), "urllib3 urlopen": urllib3_client(url)}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        for call, _close in clients.values():
            for _ in range(WARM_UP):
                call()
        load = h.MachineLoad(expected_other=1.0).start()
        for _ in range(ROUNDS):
            for name, (call, _close) in clients.items():
                results[name].append(run(call))
        print(load.summary())
        for _call, close in clients.values():
            close()
    finally:
        upstream.terminate()
        upstream.wait(10)
    print(f"{ROUNDS} interleaved rounds of {CALLS} POST /v1/orders, one thread, one kept-alive connection; medians")
    name, base = "goshop client (httptools)", "urllib3 urlopen"
    for index, what in ((0, "CPU/call"), (1, "wall/call")):
        figure = h.median([r[index] for r in results[name]])
        h.report(f"{name} {what}", figure, "us", base, h.median([r[index] for r in results[base]]))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child()
    else:
        main()
