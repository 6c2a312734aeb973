import pytest

from goshop_common.clientip import client_ip

LOOPBACK = ("127.0.0.1/32", "::1/128")


def test_a_direct_client_is_its_own_address_whatever_it_claims():
    assert client_ip("203.0.113.9", "1.2.3.4", LOOPBACK) == "203.0.113.9"


def test_behind_a_trusted_proxy_the_forwarded_client_counts():
    assert client_ip("127.0.0.1", "203.0.113.9", LOOPBACK) == "203.0.113.9"


def test_a_forged_prefix_is_ignored():
    # The client sent "X-Forwarded-For: 1.2.3.4"; the gateway appended the real peer.
    assert client_ip("127.0.0.1", "1.2.3.4, 203.0.113.9", LOOPBACK) == "203.0.113.9"


def test_a_chain_of_trusted_proxies_is_walked():
    trusted = ("10.0.0.0/8", *LOOPBACK)
    assert client_ip("127.0.0.1", "203.0.113.9, 10.1.2.3", trusted) == "203.0.113.9"


@pytest.mark.parametrize("header", [None, "", " , "])
def test_a_trusted_peer_without_a_forwarded_address_is_the_client(header):
    assert client_ip("127.0.0.1", header, LOOPBACK) == "127.0.0.1"


def test_garbage_in_the_header_is_returned_as_is_only_when_it_is_the_first_untrusted_hop():
    assert client_ip("127.0.0.1", "not-an-ip", LOOPBACK) == "not-an-ip"
