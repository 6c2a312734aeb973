"""A customer's sessions one by one: list them, end one, end all but this one."""

import uuid

from tests.support import bearer, listed, login, refreshes, register

PHONE = "Mozilla/5.0 (iPhone) Mobile"
LAPTOP = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140"


def two_logins(testapp):
    user = register(testapp)
    phone = login(testapp, user["email"], headers={"User-Agent": PHONE}, extra_environ={"REMOTE_ADDR": "192.0.2.7"})
    laptop = login(testapp, user["email"], headers={"User-Agent": LAPTOP}, extra_environ={"REMOTE_ADDR": "192.0.2.8"})
    return user, phone, laptop


def test_the_list_shows_each_active_session_with_its_device_and_which_one_is_mine(testapp):
    _user, phone, laptop = two_logins(testapp)
    sessions = listed(testapp, laptop)
    # Newest first, to the second: two logins in one second may come either way.
    assert sorted((s["user_agent"], s["client_address"], s["current"]) for s in sessions) == sorted(
        [(PHONE, "192.0.2.7", False), (LAPTOP, "192.0.2.8", True)]
    )
    assert [s["created_at"] for s in sessions] == sorted((s["created_at"] for s in sessions), reverse=True)
    assert all(s["last_refreshed_at"] is None for s in sessions)
    phone_id = next(s["id"] for s in sessions if s["user_agent"] == PHONE)
    assert [s["id"] for s in listed(testapp, phone) if s["current"]] == [phone_id]


def test_a_refresh_shows_as_the_sessions_last_refresh(testapp):
    _user, phone, _laptop = two_logins(testapp)
    rotated = testapp.post_json("/v1/users/refresh", {"refresh_token": phone["refresh_token"]}, status=200).json
    mine = [s for s in listed(testapp, rotated) if s["current"]]
    assert len(mine) == 1
    assert mine[0]["last_refreshed_at"] is not None


def test_ending_one_session_stops_its_refresh_and_leaves_the_other(testapp):
    _user, phone, laptop = two_logins(testapp)
    phone_id = next(s["id"] for s in listed(testapp, laptop) if not s["current"])
    testapp.delete(f"/v1/users/sessions/{phone_id}", headers=bearer(laptop["access_token"]), status=204)
    assert refreshes(testapp, phone) == 401
    assert [s["user_agent"] for s in listed(testapp, laptop)] == [LAPTOP]
    # Ended already: nothing to end.
    testapp.delete(f"/v1/users/sessions/{phone_id}", headers=bearer(laptop["access_token"]), status=404)
    assert refreshes(testapp, laptop) == 200


def test_someone_elses_session_is_not_found_and_stays_active(testapp):
    _user, phone, _laptop = two_logins(testapp)
    phone_id = next(s["id"] for s in listed(testapp, phone) if s["current"])
    stranger = login(testapp, register(testapp)["email"])
    response = testapp.delete(f"/v1/users/sessions/{phone_id}", headers=bearer(stranger["access_token"]), status=404)
    assert response.json["error"] == "session not found"
    assert refreshes(testapp, phone) == 200


def test_an_unknown_or_malformed_session_id_is_not_found(testapp):
    _user, phone, _laptop = two_logins(testapp)
    for session_id in (str(uuid.uuid4()), "not-a-uuid", "1"):
        testapp.delete(f"/v1/users/sessions/{session_id}", headers=bearer(phone["access_token"]), status=404)
    assert len(listed(testapp, phone)) == 2


def test_logout_others_ends_every_session_but_the_current_one(testapp):
    user, phone, laptop = two_logins(testapp)
    tablet = login(testapp, user["email"])
    response = testapp.post("/v1/users/logout_others", headers=bearer(laptop["access_token"]), status=200)
    assert response.json == {"revoked": 2}
    assert refreshes(testapp, phone) == refreshes(testapp, tablet) == 401
    assert [s["current"] for s in listed(testapp, laptop)] == [True]
    assert testapp.post("/v1/users/logout_others", headers=bearer(laptop["access_token"])).json == {"revoked": 0}


def test_the_session_endpoints_need_an_access_token(testapp):
    testapp.get("/v1/users/sessions", status=401)
    testapp.delete(f"/v1/users/sessions/{uuid.uuid4()}", status=401)
    testapp.post("/v1/users/logout_others", status=401)


def test_a_user_agent_is_stored_printable_and_cut_to_its_limit(testapp):
    user = register(testapp)
    tokens = login(testapp, user["email"], headers={"User-Agent": "x\x01y" + "z" * 400})
    (session,) = listed(testapp, tokens)
    assert session["user_agent"] == "xy" + "z" * 254
