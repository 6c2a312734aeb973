"""The environ seam lets a test hand the app its own, uncommitted session."""

import transaction
import webtest

from goshop_common.db.session import SESSION_ENVIRON_KEY
from goshop_users.models import User
from tests.support import PASSWORD, count_rows


def test_an_injected_session_is_the_one_the_request_uses(users_app, dbsession, engine):
    passwords = users_app.registry.passwords
    dbsession.add(User(email="seam@example.com", password_hash=passwords.hash(PASSWORD)))
    dbsession.flush()
    app = webtest.TestApp(
        users_app,
        extra_environ={
            SESSION_ENVIRON_KEY: dbsession,
            "tm.active": True,
            "tm.manager": transaction.TransactionManager(),
        },
    )
    # The user exists only in the test's open transaction, yet the app logs in as them.
    app.post_json("/v1/users/login", {"email": "seam@example.com", "password": PASSWORD}, status=200)
    assert count_rows(engine, "users.users") == 0
