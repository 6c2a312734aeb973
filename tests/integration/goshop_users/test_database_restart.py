"""A database restart costs at most the requests made while it is down."""

import webtest

from goshop_users import make_app
from tests.support import login, migrate_users, register, with_settings


def test_the_app_recovers_after_postgres_restarts_and_keeps_its_data(embedded_postgres, settings):
    migrate_users(embedded_postgres.url)
    app = webtest.TestApp(make_app(with_settings(settings, database_url=embedded_postgres.url)))
    user = register(app)
    login(app, user["email"])  # the pool now holds connections to the old server

    embedded_postgres.stop()
    assert app.get("/ready", status=503).json == {"error": "db not ready"}
    down = app.post_json("/v1/users/login", {"email": user["email"], "password": "x" * 8}, status=503)
    assert down.json == {"error": "service unavailable"}

    embedded_postgres.start()
    app.get("/ready", status=200)
    # Pooled connections died with the old server; they sat idle through the
    # restart, so the checkout ping finds them dead and the pool replaces them.
    login(app, user["email"])
