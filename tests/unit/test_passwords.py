"""Account password hashes in the forms Dovecot's passdb reads: checked by doveadm itself."""

from __future__ import annotations

import subprocess

import pytest

from singlewindow import passwords

LOGIN, REALM, PASSWORD = "acme", "sw.test", "correct horse"


@pytest.mark.parametrize(("password", "why"), [
    ("x" * (passwords.MIN_LENGTH - 1), "too short"),
    ("x" * (passwords.MAX_LENGTH + 1), "too long"),
    ("good password\x00", "NUL or line breaks"),
    ("good password\r\n", "NUL or line breaks"),
    ("good\npassword", "NUL or line breaks"),
])
def test_unusable_passwords_are_refused_saying_why(password: str, why: str) -> None:
    with pytest.raises(passwords.PasswordError, match=why):
        passwords.check(password)


@pytest.mark.parametrize("password", ["x" * passwords.MIN_LENGTH, "x" * passwords.MAX_LENGTH,
                                      "pässwört mit Leerzeichen"])
def test_usable_passwords_pass(password: str) -> None:
    passwords.check(password)


def test_strong_hash_round_trip() -> None:
    stored = passwords.strong_hash(PASSWORD)
    assert stored.startswith("{SHA512-CRYPT}$6$rounds=100000$")
    assert PASSWORD not in stored
    assert passwords.verify_strong(PASSWORD, stored)
    assert not passwords.verify_strong(PASSWORD + "!", stored)
    assert not passwords.verify_strong("", stored)
    # Salted: the same password hashes differently each time, and both verify.
    again = passwords.strong_hash(PASSWORD)
    assert again != stored and passwords.verify_strong(PASSWORD, again)


def test_verify_strong_wants_the_scheme_prefix() -> None:
    stored = passwords.strong_hash(PASSWORD)
    assert not passwords.verify_strong(PASSWORD, stored.removeprefix("{SHA512-CRYPT}"))
    assert not passwords.verify_strong(PASSWORD,
                                       passwords.digest_md5_hash(LOGIN, REALM, PASSWORD))


def doveadm_verifies(stored: str, password: str) -> bool:
    """``doveadm pw -t``: Dovecot's own check of a stored password (scheme prefix and all)."""
    done = subprocess.run(["doveadm", "pw", "-t", stored, "-p", password],
                          capture_output=True, text=True, timeout=30)
    return done.returncode == 0 and "(verified)" in done.stdout


def test_dovecot_verifies_the_strong_hash() -> None:
    stored = passwords.strong_hash(PASSWORD)
    assert doveadm_verifies(stored, PASSWORD)
    assert not doveadm_verifies(stored, "wrong password")


def test_digest_md5_hash_is_dovecots_for_login_and_realm() -> None:
    stored = passwords.digest_md5_hash(LOGIN, REALM, PASSWORD)
    made = subprocess.run(["doveadm", "pw", "-s", "DIGEST-MD5", "-u", f"{LOGIN}@{REALM}",
                           "-p", PASSWORD], capture_output=True, text=True, timeout=30,
                          check=True).stdout.strip()
    assert stored == made
    assert stored.startswith("{DIGEST-MD5}") and len(stored) == len("{DIGEST-MD5}") + 32
    # Each of login, realm and password goes into it.
    assert stored != passwords.digest_md5_hash("other", REALM, PASSWORD)
    assert stored != passwords.digest_md5_hash(LOGIN, "other.test", PASSWORD)
    assert stored != passwords.digest_md5_hash(LOGIN, REALM, PASSWORD + "!")
