import pytest
import webtest

from goshop_devtools.postgres import free_port
from goshop_users import make_app
from tests.support import with_settings


def test_live_is_ok(testapp):
    assert testapp.get("/live").json == {"status": "ok"}


def test_ready_is_ok_when_the_database_answers(testapp):
    assert testapp.get("/ready").json == {"status": "ok"}


def test_db_ping_reports_latency(testapp):
    body = testapp.get("/v1/db/ping").json
    assert body["status"] == "ok"
    assert isinstance(body["latency_ms"], float | int)
    assert 0 <= body["latency_ms"] < 5000


@pytest.fixture(scope="module")
def app_without_database(settings):
    """The users app pointed at a port where no database listens."""
    url = f"postgresql://goshop:goshop@127.0.0.1:{free_port()}/goshop"
    return webtest.TestApp(make_app(with_settings(settings, database_url=url, db_connect_timeout=1)))


def test_ready_is_503_db_not_ready_when_the_database_is_unreachable(app_without_database):
    response = app_without_database.get("/ready", status=503)
    assert response.json == {"error": "db not ready"}


def test_db_ping_is_503_when_the_database_is_unreachable(app_without_database):
    response = app_without_database.get("/v1/db/ping", status=503)
    assert response.json == {"error": "db not ready"}


def test_live_stays_ok_without_a_database(app_without_database):
    app_without_database.get("/live", status=200)


def test_requests_needing_the_database_get_503_json_not_500_when_it_is_down(app_without_database):
    response = app_without_database.post_json(
        "/v1/users/register", {"email": "a@example.com", "password": "long enough"}, status=503
    )
    assert response.json == {"error": "service unavailable"}
    assert response.headers["Retry-After"] == "1"
