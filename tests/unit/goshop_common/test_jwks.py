"""JwksKeyStore and verifier_from_settings, without a network: a fake fetch and a fake clock."""

import datetime as dt
import json
import logging
import threading
import time
import urllib.error
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from goshop_common.auth.jwks import JwksKeyStore, verifier_from_settings
from goshop_common.auth.thumbprint import thumbprint
from goshop_common.auth.tokens import ACCESS, InvalidToken, TokenVerifier
from goshop_common.settings import SettingsError
from goshop_devtools.settings import settings_of
from goshop_users.keys import load_signing_key
from goshop_users.tokens import TokenIssuer

URL = "http://users.test/.well-known/jwks.json"
ISSUER = "goshop-users"
KEY = ed25519.Ed25519PrivateKey.generate()
ROTATED = ed25519.Ed25519PrivateKey.generate()
OTHER = ed25519.Ed25519PrivateKey.generate()


def jwk(private_key, kid, **extra):
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        entry = json.loads(RSAAlgorithm.to_jwk(public))
    else:
        entry = json.loads(OKPAlgorithm.to_jwk(public))
    entry.update({"kid": kid, "use": "sig"})
    entry.update(extra)
    return {k: v for k, v in entry.items() if v is not None}


def jwks(*entries):
    return {"keys": list(entries)}


def raw(public_key):
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeFetch:
    """Serves ``document`` (or raises ``error``) and counts the calls."""

    def __init__(self, document=None, error=None, delay=0.0):
        self.document = document
        self.error = error
        self.delay = delay
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, url):
        with self.lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.document


@pytest.fixture
def clock():
    return Clock()


def make_store(fetch, clock, **kwargs):
    return JwksKeyStore(URL, "EdDSA", ttl=300, min_refresh_interval=10, clock=clock, fetch=fetch, **kwargs)


def token(private_key, kid, **overrides):
    now = dt.datetime.now(dt.UTC)
    claims = {
        "iss": ISSUER,
        "sub": str(uuid.uuid4()),
        "typ": ACCESS,
        "sid": str(uuid.uuid4()),
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + dt.timedelta(hours=1),
    }
    claims.update(overrides)
    return jwt.encode(claims, private_key, algorithm="EdDSA", headers={"kid": kid})


# --- caching and refreshing -------------------------------------------------


def test_keys_are_cached_so_a_second_get_does_not_fetch(clock):
    fetch = FakeFetch(jwks(jwk(KEY, "k1")))
    store = make_store(fetch, clock)
    assert raw(store.get("k1")) == raw(KEY.public_key())
    clock.now += 299
    assert raw(store.get("k1")) == raw(KEY.public_key())
    assert fetch.calls == 1


def test_nothing_is_fetched_until_a_key_is_asked_for(clock):
    fetch = FakeFetch(jwks(jwk(KEY, "k1")))
    make_store(fetch, clock)
    assert fetch.calls == 0


def test_an_unknown_kid_triggers_a_refresh_that_finds_a_rotated_in_key(clock):
    fetch = FakeFetch(jwks(jwk(KEY, "k1")))
    store = make_store(fetch, clock)
    store.get("k1")
    fetch.document = jwks(jwk(KEY, "k1"), jwk(ROTATED, "k2"))
    clock.now += 11
    assert raw(store.get("k2")) == raw(ROTATED.public_key())
    assert fetch.calls == 2


def test_unknown_kids_within_min_refresh_interval_do_not_fetch_again(clock):
    fetch = FakeFetch(jwks(jwk(KEY, "k1")))
    store = make_store(fetch, clock)
    store.get("k1")
    for i in range(100):
        clock.now += 0.05
        assert store.get(f"random-{i}") is None
    assert fetch.calls == 1
    # Once the interval has passed, an unknown kid may fetch again.
    clock.now += 10
    assert store.get("random-again") is None
    assert fetch.calls == 2


def test_a_rotated_in_key_asked_for_within_the_interval_waits_for_the_next_one(clock):
    fetch = FakeFetch(jwks(jwk(KEY, "k1")))
    store = make_store(fetch, clock)
    store.get("k1")
    fetch.document = jwks(jwk(KEY, "k1"), jwk(ROTATED, "k2"))
    clock.now += 5
    assert store.get("k2") is None
    clock.now += 5
    assert raw(store.get("k2")) == raw(ROTATED.public_key())


def test_keys_older_than_ttl_are_refreshed(clock):
    fetch = FakeFetch(jwks(jwk(KEY, "k1")))
    store = make_store(fetch, clock)
    store.get("k1")
    # Users rotated k1 out: after the ttl the store stops trusting it.
    fetch.document = jwks(jwk(ROTATED, "k2"))
    clock.now += 300
    assert store.get("k1") is None
    assert fetch.calls == 2
    assert raw(store.get("k2")) == raw(ROTATED.public_key())
    assert fetch.calls == 2


def test_the_same_kid_with_new_material_is_picked_up_after_the_ttl(clock):
    fetch = FakeFetch(jwks(jwk(KEY, "k1")))
    store = make_store(fetch, clock)
    store.get("k1")
    fetch.document = jwks(jwk(ROTATED, "k1"))
    clock.now += 301
    assert raw(store.get("k1")) == raw(ROTATED.public_key())


# --- failures ---------------------------------------------------------------

SECRET_BODY = "internal-stack-trace-do-not-log"

FAILURES = {
    "connection-refused": dict(error=ConnectionRefusedError(111, "Connection refused")),
    "timeout": dict(error=TimeoutError("timed out")),
    "url-error": dict(error=urllib.error.URLError("no route")),
    "http-500": dict(error=urllib.error.HTTPError(URL, 500, "Server Error", {}, None)),
    "bad-json": dict(error=json.JSONDecodeError(f"Expecting value: {SECRET_BODY}", SECRET_BODY, 0)),
    "not-an-object": dict(document=[SECRET_BODY]),
    "keys-not-a-list": dict(document={"keys": SECRET_BODY}),
    "no-keys": dict(document={"keys": []}),
    "malformed-key": dict(document=jwks({"kty": "OKP", "crv": "Ed25519", "x": SECRET_BODY, "kid": "k2"})),
    "only-other-alg": dict(document=jwks(jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048), "r"))),
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_a_failed_fetch_keeps_the_old_keys_and_returns_none_for_unknown_kids(clock, caplog, failure):
    fetch = FakeFetch(jwks(jwk(KEY, "k1")))
    store = make_store(fetch, clock)
    store.get("k1")
    fetch.document, fetch.error = failure.get("document"), failure.get("error")
    clock.now += 301  # stale, and past the refresh interval
    with caplog.at_level(logging.WARNING, logger="goshop.jwks"):
        assert store.get("k2") is None
        assert raw(store.get("k1")) == raw(KEY.public_key())
    assert fetch.calls == 2
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.url == URL
    expected_class = type(failure["error"]).__name__ if "error" in failure else "JwksError"
    assert record.error == expected_class
    assert URL in record.getMessage()
    assert SECRET_BODY not in record.getMessage()
    assert SECRET_BODY not in json.dumps(vars(record), default=str)


def test_a_failed_first_fetch_returns_none_without_raising(clock):
    store = make_store(FakeFetch(error=ConnectionRefusedError()), clock)
    assert store.get("k1") is None


def test_a_failed_fetch_counts_toward_the_refresh_interval(clock):
    fetch = FakeFetch(error=ConnectionRefusedError())
    store = make_store(fetch, clock)
    assert store.get("k1") is None
    clock.now += 9
    fetch.error, fetch.document = None, jwks(jwk(KEY, "k1"))
    assert store.get("k1") is None
    assert fetch.calls == 1
    clock.now += 1
    assert raw(store.get("k1")) == raw(KEY.public_key())
    assert fetch.calls == 2


def test_a_stale_key_is_served_without_refetching_while_users_is_down(clock):
    fetch = FakeFetch(jwks(jwk(KEY, "k1")))
    store = make_store(fetch, clock)
    store.get("k1")
    fetch.error = ConnectionRefusedError()
    clock.now += 400
    for _ in range(50):
        assert store.get("k1") is not None
    assert fetch.calls == 2


# --- which keys are kept ------------------------------------------------------


def test_keys_with_another_alg_are_ignored(clock):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    document = jwks(
        jwk(KEY, "eddsa", alg="EdDSA"),
        jwk(ROTATED, "no-alg", alg=None),
        jwk(rsa_key, "rs256", alg="RS256"),
        jwk(rsa_key, "rsa-no-alg", alg=None),
        jwk(OTHER, "okp-claims-rs256", alg="RS256"),
        jwk(OTHER, "encryption-key", use="enc"),
        {"kid": "no-kty", "alg": "EdDSA"},
        "not-a-key",
    )
    fetch = FakeFetch(document)
    store = make_store(fetch, clock)
    assert raw(store.get("eddsa")) == raw(KEY.public_key())
    assert raw(store.get("no-alg")) == raw(ROTATED.public_key())
    for kid in ("rs256", "rsa-no-alg", "okp-claims-rs256", "encryption-key", "no-kty"):
        clock.now += 10
        assert store.get(kid) is None, kid
    assert fetch.calls == 1 + 5


def test_a_non_string_kid_is_refused_without_fetching(clock):
    fetch = FakeFetch(jwks(jwk(KEY, "k1")))
    store = make_store(fetch, clock)
    assert store.get(["k1"]) is None
    assert fetch.calls == 0


def test_the_store_refuses_shared_secret_algorithms_and_non_http_urls():
    with pytest.raises(ValueError, match="HS256"):
        JwksKeyStore(URL, "HS256")
    with pytest.raises(ValueError, match="http"):
        JwksKeyStore("file:///etc/passwd", "EdDSA")


# --- threads ------------------------------------------------------------------


def run_in_threads(count, target):
    start = threading.Barrier(count)
    results = [None] * count
    errors = []

    def worker(i):
        try:
            start.wait()
            results[i] = target()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not errors
    return results


def test_eight_threads_with_a_slow_fetch_produce_exactly_one_fetch(clock):
    fetch = FakeFetch(jwks(jwk(KEY, "k1")), delay=0.2)
    store = make_store(fetch, clock)
    results = run_in_threads(8, lambda: store.get("k1"))
    assert fetch.calls == 1
    assert all(key is not None and raw(key) == raw(KEY.public_key()) for key in results)


def test_eight_threads_asking_for_an_unknown_kid_produce_exactly_one_fetch(clock):
    fetch = FakeFetch(jwks(jwk(KEY, "k1")))
    store = make_store(fetch, clock)
    store.get("k1")
    fetch.document, fetch.delay = jwks(jwk(KEY, "k1"), jwk(ROTATED, "k2")), 0.2
    clock.now += 10
    results = run_in_threads(8, lambda: store.get("k2"))
    assert fetch.calls == 2
    assert all(key is not None and raw(key) == raw(ROTATED.public_key()) for key in results)


def test_readers_with_a_cached_key_do_not_wait_for_a_refresh_in_progress(clock):
    in_fetch, release = threading.Event(), threading.Event()
    calls = []

    def fetch(url):
        calls.append(url)
        if len(calls) > 1:  # the refresh hangs until released
            in_fetch.set()
            release.wait(timeout=10)
        return jwks(jwk(KEY, "k1"))

    store = make_store(fetch, clock)
    store.get("k1")
    clock.now += 301
    refresher = threading.Thread(target=store.get, args=("k1",))
    refresher.start()
    try:
        assert in_fetch.wait(timeout=5)
        started = time.perf_counter()
        assert raw(store.get("k1")) == raw(KEY.public_key())
        assert time.perf_counter() - started < 0.5
    finally:
        release.set()
        refresher.join(timeout=5)
    assert len(calls) == 2


# --- with TokenVerifier -------------------------------------------------------


def test_a_verifier_on_the_store_accepts_the_matching_key_and_rejects_another(clock):
    store = make_store(FakeFetch(jwks(jwk(KEY, "k1"))), clock)
    verifier = TokenVerifier("EdDSA", ISSUER, store)
    subject = str(uuid.uuid4())
    assert verifier.verify(token(KEY, "k1", sub=subject), ACCESS)["sub"] == subject
    with pytest.raises(InvalidToken):
        verifier.verify(token(OTHER, "k1"), ACCESS)
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier.verify(token(OTHER, "attacker-kid"), ACCESS)


# --- verifier_from_settings ---------------------------------------------------


def settings_for(**environ):
    return settings_of({}, environ={"GOSHOP_ENV": "test", **environ})


def write_public_key(path, private_key):
    pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path.write_bytes(pem)
    return path


def test_verifier_from_settings_for_hs256_uses_the_shared_secret():
    secret = "a-test-secret-that-is-long-enough-for-hs256"
    verifier = verifier_from_settings(settings_for(GOSHOP_JWT_ALGORITHM="HS256", GOSHOP_JWT_SECRET=secret))
    now = dt.datetime.now(dt.UTC)
    claims = {
        "iss": ISSUER,
        "sub": "u1",
        "typ": ACCESS,
        "sid": "s",
        "jti": "j",
        "iat": now,
        "exp": now + dt.timedelta(hours=1),
    }
    assert verifier.verify(jwt.encode(claims, secret, algorithm="HS256"), ACCESS)["sub"] == "u1"
    with pytest.raises(InvalidToken):
        verifier.verify(jwt.encode(claims, secret + "x", algorithm="HS256"), ACCESS)


def test_verifier_from_settings_with_a_public_key_file_accepts_the_thumbprint_and_dev_kids(tmp_path):
    private_key = ed25519.Ed25519PrivateKey.generate()
    path = write_public_key(tmp_path / "users.pub.pem", private_key)
    verifier = verifier_from_settings(settings_for(GOSHOP_JWT_PUBLIC_KEY_FILE=str(path)))
    kid = thumbprint(private_key.public_key(), "EdDSA")
    assert verifier.verify(token(private_key, kid), ACCESS)["iss"] == ISSUER
    assert verifier.verify(token(private_key, f"dev-{kid}"), ACCESS)["iss"] == ISSUER
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier.verify(token(private_key, "some-other-kid"), ACCESS)
    with pytest.raises(InvalidToken):
        verifier.verify(token(OTHER, kid), ACCESS)


def test_verifier_from_settings_accepts_tokens_users_signs_with_its_own_key_file(tmp_path):
    private_key = ed25519.Ed25519PrivateKey.generate()
    private_path = tmp_path / "users.pem"
    private_path.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    signing_key = load_signing_key(settings_for(GOSHOP_JWT_PRIVATE_KEY_FILE=str(private_path)))
    public_path = write_public_key(tmp_path / "users.pub.pem", private_key)
    verifier = verifier_from_settings(settings_for(GOSHOP_JWT_PUBLIC_KEY_FILE=str(public_path)))
    issued = TokenIssuer(signing_key, ISSUER, 60).access_token(
        uuid.uuid4(), "a@example.com", uuid.uuid4(), dt.datetime.now(dt.UTC)
    )
    assert verifier.verify(issued, ACCESS)["email"] == "a@example.com"


def test_verifier_from_settings_accepts_tokens_signed_with_users_development_key(tmp_path):
    signing_key = load_signing_key(settings_for(GOSHOP_DEV_DIR=str(tmp_path / "dev")))
    assert signing_key.kid.startswith("dev-")
    public_path = write_public_key(tmp_path / "users.pub.pem", signing_key.private_key)
    verifier = verifier_from_settings(settings_for(GOSHOP_JWT_PUBLIC_KEY_FILE=str(public_path)))
    issued = TokenIssuer(signing_key, ISSUER, 60).access_token(
        uuid.uuid4(), "dev@example.com", uuid.uuid4(), dt.datetime.now(dt.UTC)
    )
    assert verifier.verify(issued, ACCESS)["email"] == "dev@example.com"


def test_verifier_from_settings_refuses_a_missing_or_mismatched_public_key_file(tmp_path):
    with pytest.raises(SettingsError, match="GOSHOP_JWT_PUBLIC_KEY_FILE"):
        verifier_from_settings(settings_for(GOSHOP_JWT_PUBLIC_KEY_FILE=str(tmp_path / "absent.pem")))
    rsa_path = write_public_key(
        tmp_path / "rsa.pub.pem", rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    with pytest.raises(SettingsError, match="does not hold a key for EdDSA"):
        verifier_from_settings(settings_for(GOSHOP_JWT_PUBLIC_KEY_FILE=str(rsa_path)))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(SettingsError, match="not a PEM public key"):
        verifier_from_settings(settings_for(GOSHOP_JWT_PUBLIC_KEY_FILE=str(garbage)))


def test_verifier_from_settings_without_a_key_file_uses_the_jwks_url():
    url = "http://users.internal:8081/.well-known/jwks.json"
    verifier = verifier_from_settings(settings_for(GOSHOP_JWKS_URL=url))
    assert isinstance(verifier.keys, JwksKeyStore)
    assert verifier.keys.url == url
    assert verifier.keys.algorithm == "EdDSA"
    assert verifier.algorithm == "EdDSA"
    assert verifier.issuer == ISSUER
