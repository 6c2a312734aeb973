"""Only a live session manages sessions: an access token whose session has
ended (revoked by its owner, logged out, expired) still reads until its
``exp``, but it can no longer list, end one, end the others or end them all."""

import uuid

import jwt
import pytest
import sqlalchemy as sa

from tests.support import SESSION_ENDED, bearer, listed, login, refreshes, register, table_snapshot

OWNER_DEVICE = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140"
THIEF_DEVICE = "curl/8.5.0"
SESSIONS = ["users.sessions"]


def sid(tokens) -> str:
    return jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]


def managing(testapp, tokens, target: str) -> dict[str, object]:
    """What each session-managing endpoint answers ``tokens``: (status, body, challenge)."""
    headers = bearer(tokens["access_token"])
    answers = {
        "list": testapp.get("/v1/users/sessions", headers=headers, expect_errors=True),
        "end one": testapp.delete(f"/v1/users/sessions/{target}", headers=headers, expect_errors=True),
        "logout_others": testapp.post("/v1/users/logout_others", headers=headers, expect_errors=True),
        "logout_all": testapp.post("/v1/users/logout_all", headers=headers, expect_errors=True),
    }
    return {
        name: (answer.status_code, answer.json, answer.headers.get("WWW-Authenticate"))
        for name, answer in answers.items()
    }


ENDED = (401, {"error": "invalid token"}, SESSION_ENDED)
ALL_ENDED = dict.fromkeys(["list", "end one", "logout_others", "logout_all"], ENDED)


def test_a_thief_whose_session_the_owner_ended_can_no_longer_manage_the_owners(testapp, db_connection):
    user = register(testapp)
    owner = login(testapp, user["email"], headers={"User-Agent": OWNER_DEVICE})
    thief = login(testapp, user["email"], headers={"User-Agent": THIEF_DEVICE})
    # The owner sees a device that is not theirs and ends its session.
    (stranger,) = [s for s in listed(testapp, owner) if s["user_agent"] == THIEF_DEVICE]
    testapp.delete(f"/v1/users/sessions/{stranger['id']}", headers=bearer(owner["access_token"]), status=204)
    assert refreshes(testapp, thief) == 401
    before = table_snapshot(db_connection, SESSIONS)

    # The thief's access token has not expired, but its session has: it can
    # neither see the owner's devices nor end the owner's session, whether by
    # its id, as "the others" or as "all".
    assert managing(testapp, thief, target=sid(owner)) == ALL_ENDED

    assert table_snapshot(db_connection, SESSIONS) == before
    assert [(s["id"], s["current"]) for s in listed(testapp, owner)] == [(sid(owner), True)]
    assert refreshes(testapp, owner) == 200


def test_an_ended_sessions_token_still_reads_until_it_expires(testapp):
    user = register(testapp)
    owner = login(testapp, user["email"])
    thief = login(testapp, user["email"])
    testapp.delete(f"/v1/users/sessions/{sid(thief)}", headers=bearer(owner["access_token"]), status=204)
    # As README says: an access token is good until its exp for everything but
    # managing sessions (a lookup on every request is what short tokens avoid).
    assert testapp.get("/v1/users/me", headers=bearer(thief["access_token"]), status=200).json["uid"] == user["id"]


def test_a_probe_for_sessions_by_an_ended_session_learns_nothing(testapp):
    user = register(testapp)
    owner = login(testapp, user["email"])
    thief = login(testapp, user["email"])
    testapp.post("/v1/users/logout_others", headers=bearer(owner["access_token"]), status=200)
    # Unknown, malformed, someone else's: 401 before any of them is looked at.
    stranger = login(testapp, register(testapp)["email"])
    for target in (str(uuid.uuid4()), "not-a-uuid", sid(stranger), sid(thief)):
        response = testapp.delete(f"/v1/users/sessions/{target}", headers=bearer(thief["access_token"]), status=401)
        assert response.json == {"error": "invalid token"}
    assert refreshes(testapp, stranger) == 200


def end_by_logout(testapp, tokens, _db):
    testapp.post_json("/v1/users/logout", {"refresh_token": tokens["refresh_token"]}, status=204)


def end_by_logout_all(testapp, tokens, _db):
    assert testapp.post("/v1/users/logout_all", headers=bearer(tokens["access_token"]), status=200).json == {
        "revoked": 1
    }


def end_by_expiry(_testapp, tokens, db):
    db.execute(
        sa.text("UPDATE users.sessions SET expires_at = now() - interval '1 second' WHERE id = :sid"),
        {"sid": sid(tokens)},
    )


def end_by_reuse(testapp, tokens, _db):
    testapp.post_json("/v1/users/refresh", {"refresh_token": tokens["refresh_token"]}, status=200)
    # The rotated token again: two tabs once at most, then a copy; the family is revoked.
    replays = [refreshes(testapp, tokens) for _ in range(2)]
    assert replays[-1] == 401


@pytest.mark.parametrize(
    "end", [end_by_logout, end_by_logout_all, end_by_expiry, end_by_reuse], ids=lambda f: f.__name__
)
def test_a_session_ended_any_way_manages_nothing(testapp, db_connection, end):
    user = register(testapp)
    mine = login(testapp, user["email"])
    end(testapp, mine, db_connection)
    other = login(testapp, user["email"])
    assert managing(testapp, mine, target=sid(other)) == ALL_ENDED
    assert refreshes(testapp, other) == 200


def test_logout_all_ends_the_callers_session_too_so_a_second_one_is_refused(testapp):
    user = register(testapp)
    pair = login(testapp, user["email"])
    assert testapp.post("/v1/users/logout_all", headers=bearer(pair["access_token"]), status=200).json == {"revoked": 1}
    again = testapp.post("/v1/users/logout_all", headers=bearer(pair["access_token"]), status=401)
    assert again.json == {"error": "invalid token"}


def test_a_live_session_is_checked_in_the_statement_each_endpoint_makes_anyway(testapp, db_connection):
    user = register(testapp)
    owner = login(testapp, user["email"])
    other = login(testapp, user["email"])
    statements: list[str] = []

    def seen(_conn, _cursor, sql, *_):
        if not sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK", "SET", "SHOW", "SELECT 1")):
            statements.append(sql)

    headers = bearer(owner["access_token"])
    sa.event.listen(db_connection, "before_cursor_execute", seen)
    try:
        for request in (
            lambda: testapp.get("/v1/users/sessions", headers=headers, status=200),
            lambda: testapp.delete(f"/v1/users/sessions/{sid(other)}", headers=headers, status=204),
            lambda: testapp.post("/v1/users/logout_others", headers=headers, status=200),
            lambda: testapp.post("/v1/users/logout_all", headers=headers, status=200),
            # And the refusals: one statement each too.
            lambda: testapp.get("/v1/users/sessions", headers=headers, status=401),
            lambda: testapp.delete(f"/v1/users/sessions/{sid(other)}", headers=headers, status=401),
        ):
            statements.clear()
            request()
            assert len(statements) == 1, statements
    finally:
        sa.event.remove(db_connection, "before_cursor_execute", seen)
