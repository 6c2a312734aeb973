"""The session service against the real database, with a clock the test moves."""

import datetime as dt
import threading

import jwt
import pytest
from sqlalchemy.orm import Session as DbSession

from goshop_common.auth.tokens import REFRESH
from goshop_users.accounts import Accounts
from goshop_users.models import Session
from goshop_users.sessions import REUSE_DETECTED, RefreshRejected, Sessions

START = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self):
        self.now = START

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def service(users_app, dbsession, clock):
    return Sessions(dbsession, users_app.registry.token_issuer, refresh_ttl=3600, reuse_interval=10, clock=clock)


@pytest.fixture
def user(users_app, dbsession, clock):
    return Accounts(dbsession, users_app.registry.passwords, clock).register("s@example.com", "long enough")


def claims_of(token):
    return jwt.decode(token, options={"verify_signature": False})


def test_reuse_exactly_at_the_interval_is_a_second_tab(service, user, clock):
    first = service.open(user)
    service.refresh(claims_of(first.refresh_token))
    clock.advance(10)
    service.refresh(claims_of(first.refresh_token))


def test_the_grace_yields_the_successor_only_once(service, user, clock, dbsession):
    first = service.open(user)
    second = service.refresh(claims_of(first.refresh_token))
    graced = service.refresh(claims_of(first.refresh_token))
    assert claims_of(graced.refresh_token)["jti"] == claims_of(second.refresh_token)["jti"]
    # A second replay of the rotated token is a copy, however soon it comes.
    with pytest.raises(RefreshRejected, match=REUSE_DETECTED):
        service.refresh(claims_of(first.refresh_token))
    with pytest.raises(RefreshRejected):
        service.refresh(claims_of(second.refresh_token))
    session = dbsession.get(Session, claims_of(first.refresh_token)["sid"])
    assert session.revoked_reason == REUSE_DETECTED


def test_every_grace_use_is_logged_with_the_session_id(service, user, caplog):
    first = service.open(user)
    service.refresh(claims_of(first.refresh_token))
    with caplog.at_level("INFO", logger="goshop.users.sessions"):
        service.refresh(claims_of(first.refresh_token))
    (record,) = [r for r in caplog.records if r.getMessage() == "refresh grace used"]
    assert record.session_id == claims_of(first.refresh_token)["sid"]
    # The token itself is never logged.
    assert first.refresh_token not in caplog.text


def test_reuse_one_second_past_the_interval_revokes_the_family(service, user, clock, dbsession):
    first = service.open(user)
    second = service.refresh(claims_of(first.refresh_token))
    clock.advance(11)
    with pytest.raises(RefreshRejected, match=REUSE_DETECTED):
        service.refresh(claims_of(first.refresh_token))
    with pytest.raises(RefreshRejected):
        service.refresh(claims_of(second.refresh_token))
    session = dbsession.get(Session, claims_of(first.refresh_token)["sid"])
    assert session.revoked_reason == REUSE_DETECTED


def test_rotation_slides_the_session_expiry(service, user, clock, dbsession):
    first = service.open(user)
    clock.advance(1800)
    second = service.refresh(claims_of(first.refresh_token))
    assert claims_of(second.refresh_token)["exp"] == int((START + dt.timedelta(seconds=1800 + 3600)).timestamp())


def test_a_session_past_its_expiry_cannot_refresh(service, user, clock):
    first = service.open(user)
    clock.advance(3601)
    with pytest.raises(RefreshRejected):
        service.refresh(claims_of(first.refresh_token))


def test_a_refresh_token_of_another_user_does_not_match_the_session(service, user, users_app, dbsession, clock):
    other = Accounts(dbsession, users_app.registry.passwords, clock).register("o@example.com", "long enough")
    first = service.open(user)
    forged = dict(claims_of(first.refresh_token), sub=str(other.id))
    with pytest.raises(RefreshRejected):
        service.refresh(forged)


def test_concurrent_refreshes_of_one_token_rotate_once_and_both_succeed(users_app, engine, clean_db):
    """Two tabs refresh the same token at the same instant on two connections:
    the row lock makes one rotate and the other take the grace path."""
    issuer = users_app.registry.token_issuer
    verifier = users_app.registry.token_verifier

    def now():
        return dt.datetime.now(dt.UTC)

    with DbSession(engine) as db, db.begin():
        user = Accounts(db, users_app.registry.passwords, now).register("race@example.com", "long enough")
        token = Sessions(db, issuer, 3600, 10, now).open(user).refresh_token
    claims = verifier.verify(token, REFRESH)

    barrier = threading.Barrier(2)
    results, errors = [], []

    def tab():
        try:
            with DbSession(engine) as db, db.begin():
                barrier.wait()
                results.append(Sessions(db, issuer, 3600, 10, now).refresh(claims))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=tab) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    jtis = {claims_of(pair.refresh_token)["jti"] for pair in results}
    assert len(results) == 2
    assert len(jtis) == 1  # both tabs hold the one successor
    assert claims["jti"] not in jtis
