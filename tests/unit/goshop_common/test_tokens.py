import datetime as dt
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from goshop_common.auth.tokens import ACCESS, REFRESH, InvalidToken, TokenVerifier

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


def test_an_expired_token_is_refused(verifier):
    with pytest.raises(InvalidToken):
        verifier.verify(sign(claims(iat=NOW - dt.timedelta(hours=3), exp=NOW - dt.timedelta(minutes=1))), ACCESS)


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
