"""Accounts, passwords and who is asking.

Passwords are hashed with Argon2id (argon2-cffi); the hash is all that is stored.
There is no default account: accounts are created with ``kinetic dashboard add-user``.
A signed-in browser carries a signed session cookie (Starlette's SessionMiddleware,
itsdangerous) holding only the username, the account's session epoch at sign-in and a CSRF
token; the account is read back from the database on every request and the cookie counts
only while its epoch is the account's. Signing out, a password reset and disabling the
account add one to the epoch (:func:`end_sessions`), so every session of that account,
copied cookies included, ends at once.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from insole_common.errors import InsoleError
from storage import accounts as stored
from storage.patients import patient_exists
from storage.store import Store

ROLES = ("therapist", "patient", "researcher", "admin")
MIN_PASSWORD_CHARS = 10

_hasher = PasswordHasher()
#: verified against when the username does not exist, so both cases take the same time
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(InsoleError):
    """An account cannot be created or changed as asked (bad role, weak password, unknown patient)."""

    reason = "account"


@dataclass(frozen=True)
class Actor:
    """The signed-in account behind a request."""

    username: str
    role: str
    display_name: str = ""
    #: the patient's own pseudonym, for role ``patient``
    patient: str | None = None
    #: sessions of this account count while they carry this epoch (:func:`end_sessions`)
    session_epoch: int = 0


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def add_account(store: Store, username: str, role: str, password: str, *, display_name: str = "",
                patient: str | None = None) -> None:
    """Create an account; raises :class:`AccountError` when the request is not acceptable."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {ROLES}, got {role!r}")
    if not username or not username.replace("_", "").replace("-", "").replace(".", "").isalnum() or len(username) > 64:
        raise AccountError("username: 1-64 letters, digits, '.', '_' or '-'")
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"password must have at least {MIN_PASSWORD_CHARS} characters")
    if role == "patient":
        if not patient:
            raise AccountError("a patient account needs --patient PSEUDONYM")
        if not patient_exists(store, patient):
            raise AccountError(f"unknown patient {patient!r}: a patient exists once provisioned "
                               "(kinetic provision patient --db ...) or once a first session was stored")
    elif patient:
        raise AccountError("only patient accounts are linked to a pseudonym")
    if stored.account(store, username) is not None:
        raise AccountError(f"account {username!r} exists already")
    stored.add_account(store, username, role, hash_password(password), display_name, patient, time.time_ns() // 1000)


def set_password(store: Store, username: str, password: str) -> None:
    """Replace an account's password (a reset); every session of the account ends at once."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"password must have at least {MIN_PASSWORD_CHARS} characters")
    if not stored.set_password_hash(store, username, hash_password(password)):
        raise AccountError(f"no account {username!r}")


def assign_patient(store: Store, therapist: str, patient: str) -> None:
    """Let ``therapist`` see ``patient``."""
    acc = stored.account(store, therapist)
    if acc is None or acc.role != "therapist":
        raise AccountError(f"{therapist!r} is not a therapist account")
    if not patient_exists(store, patient):
        raise AccountError(f"unknown patient {patient!r}")
    stored.assign(store, therapist, patient)


def set_disabled(store: Store, username: str, disabled: bool) -> bool:
    """Disable (or enable) an account; either way every session it has ends. False: no such account."""
    return stored.set_disabled(store, username, disabled)


def end_sessions(store: Store, username: str) -> bool:
    """End every session of the account at once (sign-out: copies of the cookie stop working too)."""
    return stored.end_sessions(store, username)


def session_values(actor: Actor) -> dict[str, str | int]:
    """What a fresh session cookie holds besides its CSRF token: the username and the session epoch."""
    return {"u": actor.username, "e": actor.session_epoch}


def session_actor(store: Store, session: dict) -> Actor | None:
    """The account a session cookie signs in, or None (signed out, ended by :func:`end_sessions`, disabled)."""
    username, epoch = session.get("u"), session.get("e")
    if not isinstance(username, str) or not isinstance(epoch, int):
        return None
    actor = load_actor(store, username)
    return actor if actor is not None and actor.session_epoch == epoch else None


def is_assigned(store: Store, therapist: str, patient: str) -> bool:
    """May ``therapist`` see ``patient``?"""
    return stored.is_assigned(store, therapist, patient)


def authenticate(store: Store, username: str, password: str) -> Actor | None:
    """The account when ``password`` is right and the account enabled, else None."""
    acc = stored.account(store, username)
    hashed = acc.password_hash if acc is not None else _DUMMY_HASH
    try:
        _hasher.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if acc is None or acc.disabled:
        return None
    if _hasher.check_needs_rehash(hashed):
        stored.set_password_hash(store, username, hash_password(password), end_sessions=False)  # same password
    return load_actor(store, username)


def load_actor(store: Store, username: str) -> Actor | None:
    acc = stored.account(store, username)
    if acc is None or acc.disabled:
        return None
    return Actor(username=acc.username, role=acc.role, display_name=acc.display_name, patient=acc.patient,
                 session_epoch=acc.session_epoch)
