"""The password rule of the user guide, and argon2id hashing."""

from __future__ import annotations

import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
# argon2 hashes any length, but a megabyte "password" is a cheap denial of service.
MAX_LENGTH = 256
SPECIALS = set(string.punctuation + " ")

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against unknown users so that response time does not reveal who exists.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class PasswordRuleError(ValueError):
    """The password breaks the rule; the message lists every missing part."""


def check_rule(password: str) -> None:
    missing = []
    if len(password) < MIN_LENGTH:
        missing.append(f"at least {MIN_LENGTH} characters")
    if not any(c.isdigit() for c in password):
        missing.append("a number")
    if not any(c in SPECIALS for c in password):
        missing.append("a special character")
    if not any(c.islower() for c in password):
        missing.append("a lowercase letter")
    if not any(c.isupper() for c in password):
        missing.append("an uppercase letter")
    if missing:
        raise PasswordRuleError("The password needs " + ", ".join(missing) + ".")
    if len(password) > MAX_LENGTH:
        raise PasswordRuleError(f"The password must be at most {MAX_LENGTH} characters long.")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-work check; ``password_hash=None`` (unknown user) still costs one verify."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and (
            password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def generate_temporary() -> str:
    """A random password that satisfies the rule (for admin-created accounts)."""
    while True:
        candidate = secrets.token_urlsafe(12) + secrets.choice("!#%+-=?@") + "aA1"
        chars = list(candidate)
        secrets.SystemRandom().shuffle(chars)
        candidate = "".join(chars)
        try:
            check_rule(candidate)
        except PasswordRuleError:
            continue
        return candidate
