"""Access-token verification with and without the verified-token cache.

    .venv/bin/python bench/bench_tokens.py

The same EdDSA token verified again and again, as a client's requests carry
it: first by a verifier with its cache off (every call checks the signature
and PyJWT parses the token twice), then by one with the cache on. Medians of
5 rounds; also the cost of a first sight (a miss) with the cache on.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h

from goshop_common.auth.tokens import ACCESS, TokenVerifier

ROUNDS = 5
CALLS = 4000


def token(key) -> str:
    now = dt.datetime.now(dt.UTC)
    claims = {
        "iss": "goshop-users",
        "sub": str(uuid.uuid4()),
        "typ": ACCESS,
        "sid": str(uuid.uuid4()),
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + dt.timedelta(minutes=15),
    }
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "k1"})


def microseconds_per_call(verifier: TokenVerifier, tokens: list[str]) -> float:
    started = time.perf_counter()
    for value in tokens:
        verifier.verify(value, ACCESS)
    return (time.perf_counter() - started) / len(tokens) * 1e6


def main() -> None:
    print(h.background_load(), flush=True)
    key = ed25519.Ed25519PrivateKey.generate()
    keys = {"k1": key.public_key()}
    same = [token(key)] * CALLS
    uncached = TokenVerifier("EdDSA", "goshop-users", keys, cache_size=0)
    results: dict[str, list[float]] = {"uncached": [], "cached": [], "miss": []}
    for _ in range(ROUNDS):
        results["uncached"].append(microseconds_per_call(uncached, same))
        cached = TokenVerifier("EdDSA", "goshop-users", keys)
        results["cached"].append(microseconds_per_call(cached, same))
        fresh = [token(key) for _ in range(CALLS // 10)]
        results["miss"].append(microseconds_per_call(cached, fresh))
    base = statistics.median(results["uncached"])
    print(f"{ROUNDS} rounds of {CALLS} verifications of one token; medians")
    h.report("verify, cache hit", statistics.median(results["cached"]), "us", "verify, cache off", base)
    h.report("verify, cache miss (first sight)", statistics.median(results["miss"]), "us", "verify, cache off", base)


if __name__ == "__main__":
    main()
