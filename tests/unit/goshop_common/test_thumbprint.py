"""The key id: the RFC 7638 thumbprint, checked against the RFCs' own examples."""

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from goshop_common.auth.thumbprint import public_jwk, thumbprint


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# RFC 7638 3.1: the RSA key of the example and its thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3"
    "oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu"
    "6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awap"
    "JzKnqDKgw"
)
RSA_KEY = rsa.RSAPublicNumbers(65537, int.from_bytes(b64decode(RFC7638_N), "big")).public_key()
# RFC 8037 A.3: the Ed25519 key of A.2 and its thumbprint.
ED25519_KEY = ed25519.Ed25519PublicKey.from_public_bytes(b64decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"))


@pytest.mark.parametrize(
    ("key", "algorithm", "expected"),
    [
        (RSA_KEY, "RS256", "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"),
        (ED25519_KEY, "EdDSA", "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"),
    ],
)
def test_the_thumbprint_of_the_rfc_example_key_is_the_rfcs(key, algorithm, expected):
    assert thumbprint(key, algorithm) == expected


def test_the_public_jwk_carries_the_key_alone():
    assert public_jwk(ED25519_KEY, "EdDSA") == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    }
