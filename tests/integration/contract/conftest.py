"""Every service served for real, with credentials, for the contract tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import webtest

from tests.integration.goshop_ops.conftest import OPS_TOKEN, make_ops_app
from tests.support import new_customer, served, truncate, with_settings

# Schemathesis logs in as often as it likes, from one address: the throttle
# must not turn its valid requests into 429s.
GENEROUS_LOGIN_LIMITS = {
    "login_max_failures_per_email_and_client": 1_000_000,
    "login_max_failures_per_client": 1_000_000,
    "login_max_failures_per_email": 1_000_000,
}


@pytest.fixture(scope="module")
def contract_users_app(settings, users_app):
    from goshop_users import make_app

    # The same signing key as users_app (the dev key directory), so that the
    # other services, which trust users_app's public key, accept its tokens.
    return make_app(with_settings(settings, **GENEROUS_LOGIN_LIMITS))


@pytest.fixture(scope="module")
def contract_ops_app(service_settings, kafka_broker):
    # The tests' broker, never a developer's on the default address.
    app = make_ops_app(service_settings, ollama_url="", kafka_bootstrap=kafka_broker.bootstrap)
    yield app
    app.registry.dbengine.dispose()


@pytest.fixture(scope="module")
def access_token(contract_users_app, engine) -> Iterator[str]:
    """A real customer's access token, and tables emptied around the module."""
    truncate(engine)
    customer = new_customer(webtest.TestApp(contract_users_app, extra_environ={"REMOTE_ADDR": "192.0.2.77"}))
    yield customer["tokens"]["access_token"]
    truncate(engine)


@pytest.fixture(scope="module")
def ops_token() -> str:
    return OPS_TOKEN


@pytest.fixture(scope="module")
def upstream_urls(contract_users_app, orders_app, payments_app, contract_ops_app) -> Iterator[dict[str, str]]:
    with (
        served(contract_users_app) as users,
        served(orders_app) as orders,
        served(payments_app) as payments,
        served(contract_ops_app) as ops,
    ):
        yield {"users": users, "orders": orders, "payments": payments, "ops": ops}


@pytest.fixture(scope="module")
def gateway_url(service_settings, upstream_urls) -> Iterator[str]:
    from goshop_gateway import make_app

    app = make_app(
        with_settings(
            service_settings,
            users_url=upstream_urls["users"],
            orders_url=upstream_urls["orders"],
            payments_url=upstream_urls["payments"],
            ops_url=upstream_urls["ops"],
        )
    )
    with served(app) as url:
        yield url
