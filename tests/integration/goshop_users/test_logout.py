import jwt
import sqlalchemy as sa

from tests.support import bearer, login, register


def test_logout_ends_one_session_and_is_idempotent(testapp):
    user = register(testapp)
    phone = login(testapp, user["email"])
    laptop = login(testapp, user["email"])
    response = testapp.post_json("/v1/users/logout", {"refresh_token": phone["refresh_token"]}, status=204)
    assert response.body == b""
    testapp.post_json("/v1/users/logout", {"refresh_token": phone["refresh_token"]}, status=204)
    testapp.post_json("/v1/users/refresh", {"refresh_token": phone["refresh_token"]}, status=401)
    # The other device carries on.
    testapp.post_json("/v1/users/refresh", {"refresh_token": laptop["refresh_token"]}, status=200)


def test_access_token_of_a_logged_out_session_stays_valid_until_it_expires(testapp):
    user = register(testapp)
    pair = login(testapp, user["email"])
    testapp.post_json("/v1/users/logout", {"refresh_token": pair["refresh_token"]}, status=204)
    testapp.get("/v1/users/me", headers=bearer(pair["access_token"]), status=200)


def test_logout_refuses_an_access_token(testapp):
    user = register(testapp)
    pair = login(testapp, user["email"])
    response = testapp.post_json("/v1/users/logout", {"refresh_token": pair["access_token"]}, status=401)
    assert response.json == {"error": "invalid token"}


def test_logout_all_revokes_every_active_session_and_counts_them(testapp):
    user = register(testapp)
    sessions = [login(testapp, user["email"]) for _ in range(3)]
    response = testapp.post("/v1/users/logout_all", headers=bearer(sessions[0]["access_token"]), status=200)
    assert response.json == {"revoked": 3}
    for pair in sessions:
        testapp.post_json("/v1/users/refresh", {"refresh_token": pair["refresh_token"]}, status=401)
    # That token's session is among them: it manages sessions no more (test_live_session).
    again = testapp.post("/v1/users/logout_all", headers=bearer(sessions[0]["access_token"]), status=401)
    assert again.json == {"error": "invalid token"}


def test_logout_all_counts_only_sessions_that_were_still_active(testapp, db_connection):
    user = register(testapp)
    kept = login(testapp, user["email"])
    ended = login(testapp, user["email"])
    expired = login(testapp, user["email"])
    testapp.post_json("/v1/users/logout", {"refresh_token": ended["refresh_token"]}, status=204)
    sid = jwt.decode(expired["refresh_token"], options={"verify_signature": False})["sid"]
    db_connection.execute(
        sa.text("UPDATE users.sessions SET expires_at = now() - interval '1 second' WHERE id = :sid"), {"sid": sid}
    )
    response = testapp.post("/v1/users/logout_all", headers=bearer(kept["access_token"]), status=200)
    assert response.json == {"revoked": 1}


def test_logout_all_leaves_other_users_sessions_alone(testapp):
    alice = register(testapp)
    bob = register(testapp)
    alice_pair = login(testapp, alice["email"])
    bob_pair = login(testapp, bob["email"])
    testapp.post("/v1/users/logout_all", headers=bearer(alice_pair["access_token"]), status=200)
    testapp.post_json("/v1/users/refresh", {"refresh_token": bob_pair["refresh_token"]}, status=200)


def test_logout_all_needs_an_access_token(testapp):
    user = register(testapp)
    pair = login(testapp, user["email"])
    assert testapp.post("/v1/users/logout_all", status=401).json == {"error": "unauthorized"}
    response = testapp.post("/v1/users/logout_all", headers=bearer(pair["refresh_token"]), status=401)
    assert response.json == {"error": "invalid token"}
