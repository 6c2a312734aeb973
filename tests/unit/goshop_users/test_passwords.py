import argon2
import pytest

from goshop_users.passwords import Passwords


@pytest.fixture(scope="module")
def passwords():
    return Passwords(time_cost=2, memory_kib=19456, parallelism=1)


def test_hashes_are_argon2id_with_owasp_parameters(passwords):
    hashed = passwords.hash("secret password")
    assert hashed.startswith("$argon2id$")
    assert "m=19456,t=2,p=1" in hashed
    assert passwords.hash("secret password") != hashed  # salted


def test_verify_accepts_the_password_and_refuses_others(passwords):
    hashed = passwords.hash("secret password")
    assert passwords.verify(hashed, "secret password")
    assert not passwords.verify(hashed, "Secret password")
    assert not passwords.verify("not a hash", "secret password")


def test_an_unknown_account_costs_one_full_verification(passwords, monkeypatch):
    """No user enumeration by timing: a miss runs the same argon2 verify as a
    wrong password (bench/bench_passwords.py measures the two side by side)."""
    calls = []
    real_verify = argon2.PasswordHasher.verify

    def counting_verify(self, hash, password):
        calls.append(hash)
        return real_verify(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counting_verify)
    assert not passwords.verify(None, "secret password")
    assert len(calls) == 1
    assert calls[0].startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_even_the_dummy_password_does_not_log_in_an_unknown_account(passwords):
    assert not passwords.verify(None, "goshop-timing-equaliser")


def test_hashes_made_with_weaker_parameters_are_upgraded_on_login(passwords):
    weak = Passwords(time_cost=1, memory_kib=8192, parallelism=1).hash("pw")
    assert passwords.needs_rehash(weak)
    assert not passwords.needs_rehash(passwords.hash("pw"))
