"""Cornice views answer JSON whatever the Accept header, and a 204 has no body."""

import pytest
from cornice import Service
from pyramid.config import Configurator
from webtest import TestApp

from goshop_common.web.rest import JsonRenderer


@pytest.fixture(scope="module")
def cornice_app():
    thing = Service(name="thing", path="/thing")

    @thing.get()
    def get(request):
        return {"status": "ok"}

    @thing.delete()
    def delete(request):
        request.response.status_code = 204
        return {"ignored": True}

    with Configurator() as config:
        config.include("cornice")
        config.add_renderer("cornicejson", JsonRenderer())
        config.add_cornice_service(thing)
    return TestApp(config.make_wsgi_app())


@pytest.mark.parametrize("accept", ["text/plain", "text/html", "application/json", "*/*", None])
def test_a_cornice_view_answers_json_whatever_the_accept_header(cornice_app, accept):
    headers = {"Accept": accept} if accept else {}
    response = cornice_app.get("/thing", headers=headers)
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert response.json == {"status": "ok"}


@pytest.mark.parametrize("accept", ["text/plain", "text/html", "application/json", "*/*", None])
def test_a_service_answers_json_whatever_the_accept_header(testapp, accept):
    headers = {"Accept": accept} if accept else {}
    response = testapp.get("/live", headers=headers)
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert response.json == {"status": "ok"}


def test_a_no_content_answer_has_no_body_and_no_content_type(cornice_app):
    response = cornice_app.delete("/thing", status=204)
    assert response.body == b""
    assert "Content-Type" not in response.headers
