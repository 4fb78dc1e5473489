"""Password hashes for accounts (SPEC D7), in the forms Dovecot's passdb reads.

PLAIN, LOGIN and POP3 USER/PASS verify against SHA512-CRYPT; DIGEST-MD5 (RFC 2831) can
only verify against the cleartext or against MD5(login:realm:password), Dovecot's
``{DIGEST-MD5}`` scheme, so both are stored and the cleartext never is.
"""

from __future__ import annotations

import hashlib

from passlib.hash import sha512_crypt

#: Refuse passwords a DIGEST-MD5 or PLAIN client could not carry (RFC 4616: no NUL).
MIN_LENGTH = 8
MAX_LENGTH = 1024


class PasswordError(ValueError):
    """The password is unusable; the text says why."""


def check(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"password too short (at least {MIN_LENGTH} characters)")
    if len(password) > MAX_LENGTH:
        raise PasswordError(f"password too long (at most {MAX_LENGTH} characters)")
    if any(c in password for c in "\x00\r\n"):
        raise PasswordError("password may not contain NUL or line breaks")


def strong_hash(password: str) -> str:
    """Dovecot ``{SHA512-CRYPT}`` form, for PLAIN/LOGIN and POP3."""
    hashed: str = sha512_crypt.using(rounds=100_000).hash(password)
    return "{SHA512-CRYPT}" + hashed


def digest_md5_hash(login: str, realm: str, password: str) -> str:
    """Dovecot ``{DIGEST-MD5}`` form: hex MD5 of ``login:realm:password`` (RFC 2831 2.1.2.1)."""
    secret = f"{login}:{realm}:{password}".encode()
    # MD5 is what DIGEST-MD5 is defined over; this is not a choice of hash.
    return "{DIGEST-MD5}" + hashlib.md5(secret, usedforsecurity=False).hexdigest()


def verify_strong(password: str, stored: str) -> bool:
    scheme = "{SHA512-CRYPT}"
    return stored.startswith(scheme) and bool(sha512_crypt.verify(password, stored[len(scheme):]))
