"""The saga's workers (outboxer, consumers) read and write on connections of
their own: these tests' WebTest clients commit for real, and every table the
migrations made is emptied around each test."""

import pytest


@pytest.fixture
def testapp(committing_testapp):
    return committing_testapp


@pytest.fixture
def orders_client(committing_orders_client):
    return committing_orders_client
