"""Every request of a goshop app is one class made at start-up that carries
the app's request extensions, and Cornice views answer JSON without
negotiating."""

import pytest
from cornice import Service
from pyramid.config import Configurator

from goshop_common.web.app import one_request_class


def test_two_requests_of_a_service_share_one_class_holding_its_extensions(orders_app):
    factory = orders_app.request_factory
    first, second = factory.blank("/live"), factory.blank("/live")
    seen = {type(first), type(second)}
    assert seen == {factory}
    # Pyramid no longer hangs the extensions on each request itself.
    assert orders_app.request_extensions is None
    for name in ("tm", "dbsession", "client_ip", "current_service"):
        assert name in vars(factory), name


def test_a_reified_extension_is_computed_once_per_request_and_not_shared(orders_app):
    request = orders_app.request_factory.blank("/v1/orders")
    request.registry = orders_app.registry
    assert request.client_ip is request.client_ip
    other = orders_app.request_factory.blank("/v1/orders", remote_addr="10.1.2.3")
    other.registry = orders_app.registry
    assert other.client_ip != request.client_ip


def test_an_app_without_extensions_keeps_its_request_class():
    with Configurator() as config:
        config.add_route("status", "/status")
    app = config.make_wsgi_app()
    before = app.request_factory
    one_request_class(app)
    assert app.request_factory is before


@pytest.mark.parametrize("accept", ["text/plain", "text/html", "application/json", "*/*", None])
def test_a_service_answers_json_whatever_the_accept_header(testapp, accept):
    headers = {"Accept": accept} if accept else {}
    response = testapp.get("/live", headers=headers)
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert response.json == {"status": "ok"}


def test_a_no_content_answer_has_no_body_and_no_content_type():
    from webtest import TestApp

    from goshop_common.web.rest import JsonRenderer

    empty = Service(name="empty", path="/empty")

    @empty.delete()
    def delete(request):
        request.response.status_code = 204
        return {"ignored": True}

    with Configurator() as config:
        config.include("cornice")
        config.add_renderer("cornicejson", JsonRenderer())
        config.add_cornice_service(empty)
    response = TestApp(config.make_wsgi_app()).delete("/empty", status=204)
    assert response.body == b""
    assert "Content-Type" not in response.headers
