import datetime as dt
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from goshop_common.auth.tokens import ACCESS, REFRESH, ExpiredToken, InvalidToken, TokenVerifier, challenge

NOW = dt.datetime.now(dt.UTC)
KEY = ed25519.Ed25519PrivateKey.generate()
OTHER_KEY = ed25519.Ed25519PrivateKey.generate()


def claims(**overrides):
    base = {
        "iss": "goshop-users",
        "sub": str(uuid.uuid4()),
        "typ": ACCESS,
        "sid": str(uuid.uuid4()),
        "jti": str(uuid.uuid4()),
        "iat": NOW,
        "exp": NOW + dt.timedelta(hours=2),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload, key=KEY, kid="k1", algorithm="EdDSA"):
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
def verifier():
    return TokenVerifier("EdDSA", "goshop-users", {"k1": KEY.public_key()})


def test_a_valid_access_token_verifies(verifier):
    payload = claims()
    assert verifier.verify(sign(payload), ACCESS)["sub"] == payload["sub"]


def test_a_refresh_token_is_not_an_access_token_nor_the_reverse(verifier):
    with pytest.raises(InvalidToken, match="type"):
        verifier.verify(sign(claims(typ=REFRESH)), ACCESS)
    with pytest.raises(InvalidToken, match="type"):
        verifier.verify(sign(claims(typ=ACCESS)), REFRESH)


EXPIRED = {"iat": NOW - dt.timedelta(hours=3), "exp": NOW - dt.timedelta(minutes=1)}


def test_an_expired_token_is_refused_as_expired(verifier):
    with pytest.raises(ExpiredToken):
        verifier.verify(sign(claims(**EXPIRED)), ACCESS)


@pytest.mark.parametrize(
    "token",
    [
        sign(claims(**EXPIRED), key=OTHER_KEY),
        sign(claims(**EXPIRED), kid="k2"),
        sign(claims(**EXPIRED, iss="someone-else")),
        sign(claims(**EXPIRED, typ=REFRESH)),
        sign(claims(**EXPIRED, jti=None)),
    ],
    ids=["other-key", "unknown-kid", "other-issuer", "refresh-as-access", "missing-claim"],
)
def test_only_an_otherwise_good_token_is_called_expired(verifier, token):
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(token, ACCESS)
    assert not isinstance(refused.value, ExpiredToken)


def test_another_issuer_is_refused(verifier):
    with pytest.raises(InvalidToken):
        verifier.verify(sign(claims(iss="someone-else")), ACCESS)


def test_a_token_signed_by_another_key_is_refused(verifier):
    with pytest.raises(InvalidToken):
        verifier.verify(sign(claims(), key=OTHER_KEY), ACCESS)


def test_an_unknown_key_id_is_refused(verifier):
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier.verify(sign(claims(), kid="k2"), ACCESS)


def test_alg_none_is_refused(verifier):
    with pytest.raises(InvalidToken):
        verifier.verify(jwt.encode(claims(), None, algorithm="none", headers={"kid": "k1"}), ACCESS)


def test_hs256_signed_with_the_public_key_is_refused(verifier):
    # The classic algorithm-confusion attack: HMAC keyed with the public key.
    public_pem = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    forged = jwt.encode(claims(), public_pem, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(InvalidToken, match="algorithm"):
        verifier.verify(forged, ACCESS)


@pytest.mark.parametrize("missing", ["exp", "iat", "iss", "sub", "typ", "sid", "jti"])
def test_a_token_missing_a_required_claim_is_refused(verifier, missing):
    with pytest.raises(InvalidToken):
        verifier.verify(sign(claims(**{missing: None})), ACCESS)


@pytest.mark.parametrize("garbage", ["", "a", "a.b", "a.b.c", "...", "e30.e30.e30"])
def test_garbage_is_an_invalid_token_not_a_crash(verifier, garbage):
    with pytest.raises(InvalidToken):
        verifier.verify(garbage, ACCESS)


def test_hs256_mode_verifies_with_the_shared_secret():
    secret = b"s" * 32
    verifier = TokenVerifier("HS256", "goshop-users", {"": secret})
    token = jwt.encode(claims(), secret, algorithm="HS256")
    assert verifier.verify(token, ACCESS)["iss"] == "goshop-users"
    with pytest.raises(InvalidToken):
        verifier.verify(jwt.encode(claims(), b"t" * 32, algorithm="HS256"), ACCESS)


# -- the verified-token cache ---------------------------------------------------


class CountingKeys:
    """A key source that counts lookups: one per signature actually checked."""

    def __init__(self, keys):
        self.keys = keys
        self.lookups = 0

    def get(self, kid):
        self.lookups += 1
        return self.keys.get(kid)


class Clock:
    """Starts at the real time (PyJWT checks expiry against it) and moves only when told."""

    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


def cached_verifier(**options):
    keys = CountingKeys({"k1": KEY.public_key()})
    clock = Clock()
    return TokenVerifier("EdDSA", "goshop-users", keys, clock=clock, **options), keys, clock


def test_a_token_seen_before_is_not_verified_again():
    verifier, keys, _ = cached_verifier()
    token = sign(claims())
    first, second = verifier.verify(token, ACCESS), verifier.verify(token, ACCESS)
    assert first == second
    assert keys.lookups == 1


def test_a_cached_token_is_verified_again_after_the_cache_interval():
    verifier, keys, clock = cached_verifier(cache_seconds=60)
    token = sign(claims())
    verifier.verify(token, ACCESS)
    clock.now += 61
    verifier.verify(token, ACCESS)
    assert keys.lookups == 2


def test_a_cached_token_is_dropped_at_its_expiry_even_within_the_interval():
    verifier, keys, clock = cached_verifier(cache_seconds=3600)
    # From the time now, not the module's NOW: the suite may have run for minutes since.
    token = sign(claims(exp=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)))
    verifier.verify(token, ACCESS)
    clock.now += 31
    verifier.verify(token, ACCESS)  # PyJWT's own clock: still valid, so it verifies again
    assert keys.lookups == 2


def test_the_cache_is_bounded_and_forgets_the_least_recently_used():
    verifier, keys, _ = cached_verifier(cache_size=2)
    a, b, c = (sign(claims()) for _ in range(3))
    for token in (a, b, a, c):  # c pushes out b, the least recently used
        verifier.verify(token, ACCESS)
    assert keys.lookups == 3
    verifier.verify(a, ACCESS)
    assert keys.lookups == 3
    verifier.verify(b, ACCESS)
    assert keys.lookups == 4


def test_claims_from_the_cache_are_a_copy_no_caller_can_change_for_another():
    verifier, _, _ = cached_verifier()
    token = sign(claims())
    verifier.verify(token, ACCESS)["sub"] = "someone else"
    assert verifier.verify(token, ACCESS)["sub"] != "someone else"


def test_a_cached_access_token_is_still_not_a_refresh_token():
    verifier, _, _ = cached_verifier()
    token = sign(claims(typ=ACCESS))
    verifier.verify(token, ACCESS)
    with pytest.raises(InvalidToken, match="type"):
        verifier.verify(token, REFRESH)


def test_a_rejected_token_is_checked_every_time():
    verifier, keys, _ = cached_verifier()
    forged = sign(claims(), key=OTHER_KEY)
    for _ in range(3):
        with pytest.raises(InvalidToken):
            verifier.verify(forged, ACCESS)
    assert keys.lookups == 3


def test_a_cache_of_size_zero_verifies_every_time():
    verifier, keys, _ = cached_verifier(cache_size=0)
    token = sign(claims())
    verifier.verify(token, ACCESS)
    verifier.verify(token, ACCESS)
    assert keys.lookups == 2


# -- the WWW-Authenticate challenge (RFC 6750 3) ----------------------------------


def test_a_challenge_without_credentials_has_no_error_code():
    assert challenge() == "Bearer"
    assert challenge(realm="goshop-ops") == 'Bearer realm="goshop-ops"'


def test_a_challenge_lists_realm_error_and_description_quoted():
    assert challenge("invalid_token", "the access token expired", realm="r") == (
        'Bearer realm="r", error="invalid_token", error_description="the access token expired"'
    )


@pytest.mark.parametrize("description", ['say "no"', "back\\slash", "caf\u00e9", "line\nbreak"])
def test_a_challenge_refuses_what_rfc_6750_does_not_allow_in_a_description(description):
    with pytest.raises(ValueError, match="error_description"):
        challenge("invalid_token", description)
