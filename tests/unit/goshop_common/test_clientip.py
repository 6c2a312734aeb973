import pytest

from goshop_common.web.clientip import client_ip, client_network

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


@pytest.mark.parametrize("garbage", ["not-an-ip", "unknown", "1.2.3.4.5", "' OR 1=1 --", "x" * 300])
def test_garbage_from_a_trusted_proxy_falls_back_to_the_proxys_own_address(garbage):
    assert client_ip("127.0.0.1", garbage, LOOPBACK) == "127.0.0.1"


def test_garbage_deeper_in_the_chain_stops_at_the_last_trusted_hop():
    trusted = ("10.0.0.0/8", *LOOPBACK)
    assert client_ip("127.0.0.1", "203.0.113.9, bogus, 10.1.2.3", trusted) == "10.1.2.3"


def test_trusting_nobody_makes_the_peer_the_client():
    assert client_ip("127.0.0.1", "203.0.113.9", ()) == "127.0.0.1"


def test_an_ipv4_mapped_peer_is_its_ipv4_address_for_trust_and_for_the_result():
    assert client_ip("::ffff:127.0.0.1", "::ffff:203.0.113.9", LOOPBACK) == "203.0.113.9"
    assert client_ip("::ffff:203.0.113.9", None, LOOPBACK) == "203.0.113.9"


@pytest.mark.parametrize(
    ("hop", "expected"),
    [
        ("203.0.113.9:51234", "203.0.113.9"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ('"[2001:DB8:0:0::1]"', "2001:db8::1"),
        ("2001:0db8:0000::0001", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_forwarded_hops_are_canonicalised(hop, expected):
    assert client_ip("127.0.0.1", hop, LOOPBACK) == expected


def test_an_ipv6_proxy_is_trusted_by_its_network():
    assert client_ip("::1", "203.0.113.9", LOOPBACK) == "203.0.113.9"
    assert client_ip("2001:db8::7", "203.0.113.9", ("2001:db8::/32",)) == "203.0.113.9"


def test_a_peer_that_is_not_an_address_has_no_client_address():
    assert client_ip(None, "203.0.113.9", LOOPBACK) is None
    assert client_ip("", "203.0.113.9", LOOPBACK) is None


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        (None, None),
        ("garbage", None),
    ],
)
def test_throttling_counts_ipv4_per_address_and_ipv6_per_64(address, expected):
    assert client_network(address) == expected
