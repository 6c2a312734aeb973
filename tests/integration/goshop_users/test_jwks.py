import jwt

from tests.support import login, register


def test_jwks_publishes_the_public_key_that_verifies_access_tokens(testapp):
    user = register(testapp)
    token = login(testapp, user["email"])["access_token"]
    response = testapp.get("/.well-known/jwks.json")
    assert "max-age" in response.headers["Cache-Control"]
    keys = jwt.PyJWKSet.from_dict(response.json)
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    claims = jwt.decode(token, key.key, algorithms=["EdDSA"], issuer="goshop-users")
    assert claims["sub"] == user["id"]


def test_jwks_holds_no_private_material(testapp):
    for key in testapp.get("/.well-known/jwks.json").json["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(key)


def test_development_key_id_is_marked_dev(testapp):
    kids = [key["kid"] for key in testapp.get("/.well-known/jwks.json").json["keys"]]
    assert kids
    assert all(kid.startswith("dev-") for kid in kids)
