import jwt
import sqlalchemy as sa

from tests.support import bearer, login, register


def _claims(token):
    return jwt.decode(token, options={"verify_signature": False})


def _refresh(app, token, status=200):
    return app.post_json("/v1/users/refresh", {"refresh_token": token}, status=status)


def test_refresh_rotates_the_refresh_token_and_issues_a_working_access_token(testapp):
    user = register(testapp)
    first = login(testapp, user["email"])
    second = _refresh(testapp, first["refresh_token"]).json
    assert second["token_type"] == "Bearer"
    assert second["expires_in"] == 7200
    assert _claims(second["refresh_token"])["jti"] != _claims(first["refresh_token"])["jti"]
    assert _claims(second["refresh_token"])["sid"] == _claims(first["refresh_token"])["sid"]
    assert testapp.get("/v1/users/me", headers=bearer(second["access_token"])).json["uid"] == user["id"]
    third = _refresh(testapp, second["refresh_token"]).json
    assert _claims(third["refresh_token"])["jti"] not in {
        _claims(first["refresh_token"])["jti"],
        _claims(second["refresh_token"])["jti"],
    }


def test_refresh_refuses_an_access_token(testapp):
    user = register(testapp)
    pair = login(testapp, user["email"])
    assert _refresh(testapp, pair["access_token"], status=401).json == {"error": "invalid token"}


def test_refresh_refuses_garbage(testapp):
    assert _refresh(testapp, "garbage", status=401).json == {"error": "invalid token"}


def test_a_refused_refresh_token_gets_no_bearer_challenge(testapp):
    # It came in the body, not as an HTTP credential: a Bearer challenge would
    # tell the client to send it in Authorization (docs/api.md, Errors).
    assert "WWW-Authenticate" not in _refresh(testapp, "garbage", status=401).headers


def test_reusing_a_rotated_token_after_the_reuse_interval_revokes_the_whole_family(testapp, db_connection):
    user = register(testapp)
    stolen = login(testapp, user["email"])["refresh_token"]
    legit = _refresh(testapp, stolen).json["refresh_token"]
    # Move the rotation out of the reuse interval.
    db_connection.execute(sa.text("UPDATE users.sessions SET rotated_at = rotated_at - interval '1 hour'"))
    assert _refresh(testapp, stolen, status=401).json == {"error": "invalid token"}
    # The thief's attempt also ended the legitimate holder's session.
    _refresh(testapp, legit, status=401)
    reason = db_connection.execute(sa.text("SELECT revoked_reason FROM users.sessions")).scalar_one()
    assert reason == "refresh token reuse"


def test_reusing_a_rotated_token_within_the_reuse_interval_gets_the_same_successor(testapp, db_connection):
    user = register(testapp)
    shared = login(testapp, user["email"])["refresh_token"]
    tab_one = _refresh(testapp, shared).json
    tab_two = _refresh(testapp, shared).json  # a second tab, a moment later
    assert _claims(tab_two["refresh_token"])["jti"] == _claims(tab_one["refresh_token"])["jti"]
    assert testapp.get("/v1/users/me", headers=bearer(tab_two["access_token"])).status_code == 200
    # Nobody was logged out: the successor still rotates.
    _refresh(testapp, tab_one["refresh_token"])
    revoked = db_connection.execute(sa.text("SELECT revoked_at FROM users.sessions")).scalar_one()
    assert revoked is None


def test_a_token_two_rotations_old_is_reuse_even_within_the_interval(testapp):
    user = register(testapp)
    oldest = login(testapp, user["email"])["refresh_token"]
    middle = _refresh(testapp, oldest).json["refresh_token"]
    newest = _refresh(testapp, middle).json["refresh_token"]
    _refresh(testapp, oldest, status=401)
    _refresh(testapp, newest, status=401)


def test_refresh_of_an_expired_session_is_refused(testapp, db_connection):
    user = register(testapp)
    pair = login(testapp, user["email"])
    db_connection.execute(sa.text("UPDATE users.sessions SET expires_at = now() - interval '1 second'"))
    _refresh(testapp, pair["refresh_token"], status=401)
