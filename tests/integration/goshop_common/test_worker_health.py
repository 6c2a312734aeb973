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


def test_live_fails_with_the_reason_when_the_worker_is_stalled_and_its_dependencies_answer(settings):
    app = webtest.TestApp(
        health_app(settings, {"database": lambda: True}, stalled=lambda: "no progress for 61 s (12 events behind)")
    )
    assert app.get("/live", status=503).json == {"error": "not live: no progress for 61 s (12 events behind)"}


def test_live_holds_while_a_stalled_worker_waits_for_a_dependency(settings):
    # Restarting a worker brings no database back: k8s would only back off.
    app = webtest.TestApp(
        health_app(
            settings, {"database": lambda: False}, stalled=lambda: "no progress for 61 s (waiting for its group)"
        )
    )
    assert app.get("/live").json == {"status": "ok"}


def test_live_is_ok_while_the_worker_moves(settings):
    app = webtest.TestApp(health_app(settings, {"database": lambda: True}, stalled=lambda: None))
    assert app.get("/live").json == {"status": "ok"}
