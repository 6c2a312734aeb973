import webtest

from goshop_common.messaging.worker import health_app


def test_ready_names_every_failing_check(settings):
    def broken():
        raise RuntimeError("boom")

    app = webtest.TestApp(health_app(settings, {"database": lambda: True, "broker": lambda: False, "cache": broken}))
    assert app.get("/live").json == {"status": "ok"}
    response = app.get("/ready", status=503)
    assert response.json == {"error": "not ready: broker, cache"}


def test_ready_is_ok_when_every_check_passes(settings):
    app = webtest.TestApp(health_app(settings, {"database": lambda: True}))
    assert app.get("/ready").json == {"status": "ok"}
    app.get("/nope", status=404)
