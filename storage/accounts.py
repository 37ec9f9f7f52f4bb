"""The dashboards' people: ``accounts``, ``therapist_patients`` and the ``patients`` they name
(tables of migration 2, :mod:`storage.schema`).

Only storage here: password hashing and who may do what stay in :mod:`dashboards.auth`.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.rows import first_row
from storage.store import Store


@dataclass(frozen=True)
class AccountRow:
    """One stored account (``password_hash`` is read only to check a password)."""

    username: str
    role: str
    display_name: str
    patient: str | None
    disabled: bool
    password_hash: str
    #: sessions signed in at another epoch are over (migration 9; dashboards.auth)
    session_epoch: int = 0


def account(store: Store, username: str) -> AccountRow | None:
    r = first_row(store, "SELECT username, role, display_name, patient, disabled, password_hash, session_epoch "
                  "FROM accounts WHERE username = ?", (username,))
    if r is None:
        return None
    return AccountRow(username=str(r["username"]), role=str(r["role"]), display_name=str(r["display_name"] or ""),
                      patient=None if r["patient"] is None else str(r["patient"]), disabled=bool(int(r["disabled"])),
                      password_hash=str(r["password_hash"]), session_epoch=int(r["session_epoch"]))


def add_account(store: Store, username: str, role: str, password_hash: str, display_name: str, patient: str | None,
                created_us: int) -> None:
    store.execute(
        "INSERT INTO accounts (username, role, password_hash, display_name, patient, created_us) VALUES (?, ?, ?, ?, ?, ?)",
        (username, role, password_hash, display_name, patient, created_us))


def set_password_hash(store: Store, username: str, password_hash: str, *, end_sessions: bool = True) -> bool:
    """True when the account exists (and now has ``password_hash``). ``end_sessions``: every session signed in
    before ends (a reset); False only where the same password is re-hashed with new parameters."""
    sql = ("UPDATE accounts SET password_hash = ?, session_epoch = session_epoch + 1 WHERE username = ?" if end_sessions
           else "UPDATE accounts SET password_hash = ? WHERE username = ?")
    return store.execute(sql, (password_hash, username)) == 1


def set_disabled(store: Store, username: str, disabled: bool) -> bool:
    """True when the account exists. Every session of the account ends (also when it is enabled again)."""
    return store.execute("UPDATE accounts SET disabled = ?, session_epoch = session_epoch + 1 WHERE username = ?",
                         (int(disabled), username)) == 1


def end_sessions(store: Store, username: str) -> bool:
    """End every session of the account at once (sign-out); True when the account exists."""
    return store.execute("UPDATE accounts SET session_epoch = session_epoch + 1 WHERE username = ?", (username,)) == 1


def accounts_n(store: Store) -> int:
    return int(store.query("SELECT COUNT(*) AS n FROM accounts").iloc[0]["n"])


def accounts(store: Store) -> list[dict]:
    """Every account without its password hash, by username: ``username, role, display_name, patient, disabled,
    created_us``."""
    rows = store.query("SELECT username, role, display_name, patient, disabled, created_us FROM accounts ORDER BY username")
    return [{"username": str(u), "role": str(r), "display_name": str(n or ""), "patient": None if p is None else str(p),
             "disabled": int(d), "created_us": int(c)} for u, r, n, p, d, c in rows.itertuples(index=False, name=None)]


def assign(store: Store, therapist: str, patient: str) -> None:
    store.execute("INSERT INTO therapist_patients (therapist, patient) VALUES (?, ?) ON CONFLICT DO NOTHING",
                  (therapist, patient))


def is_assigned(store: Store, therapist: str, patient: str) -> bool:
    return not store.query("SELECT 1 AS x FROM therapist_patients WHERE therapist = ? AND patient = ?",
                           (therapist, patient)).empty


def assignments(store: Store) -> list[dict]:
    """Every ``{therapist, patient}`` pair, by therapist then patient."""
    rows = store.query("SELECT therapist, patient FROM therapist_patients ORDER BY therapist, patient")
    return [{"therapist": str(t), "patient": str(p)} for t, p in rows.itertuples(index=False, name=None)]


def therapist_patients(store: Store, therapist: str) -> list[tuple[str, str]]:
    """``(patient, display name of the patient's account or "")`` of one therapist, by patient."""
    rows = store.query(
        "SELECT tp.patient, a.display_name FROM therapist_patients tp "
        "LEFT JOIN accounts a ON a.patient = tp.patient AND a.role = 'patient' WHERE tp.therapist = ? ORDER BY tp.patient",
        (therapist,))
    out: dict[str, str] = {}
    for patient, name in rows.itertuples(index=False, name=None):
        out.setdefault(str(patient), "" if name is None or name != name else str(name))
    return list(out.items())
