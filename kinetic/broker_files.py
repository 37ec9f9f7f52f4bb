"""The files with secrets that ``kinetic provision`` writes: Mosquitto's password file (in
``mosquitto_passwd``'s own format) and ACL, the gateway's environment file, and where such files may go
(never inside a git work tree).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

from insole_common import topics
from insole_common.errors import InsoleError

#: the ACL rules that give each collector (username = pseudonym) its own patient's topics; the
#: same lines as deploy/mosquitto/acl (tests/test_provision.py checks that they stay the same)
PATIENT_ACL_RULES = (
    "pattern write kc/v1/+/%u/raw/+",
    "pattern write kc/v1/+/%u/session",
    "pattern write kc/v1/+/%u/status/#",
    "pattern read kc/v1/+/%u/control",
)


def patient_acl_rules(root: str | None = None) -> tuple[str, ...]:
    """:data:`PATIENT_ACL_RULES` under the topic root in use (``KINETIC_TOPIC_ROOT``, e.g. a staging system's)."""
    root = root or topics.root()
    return tuple(rule.replace(f" {topics.DEFAULT_ROOT}/", f" {root}/") for rule in PATIENT_ACL_RULES)


#: PBKDF2 iterations of mosquitto_passwd's default sha512-pbkdf2 ($7$); the passwords are 256-bit random
#: strings, so the (low) count costs a guesser nothing it could use, and keeps the broker's per-connect check cheap
MOSQUITTO_PBKDF2_ITERATIONS = 101
_ENV_VALUE = re.compile(r"^[A-Za-z0-9_.:/@%+=-]*$")


class ProvisionError(InsoleError):
    """Provisioning cannot do what was asked (existing account, path inside a repository, bad ACL)."""

    reason = "provision"


# --- Mosquitto password file -----------------------------------------------------------------------

def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = MOSQUITTO_PBKDF2_ITERATIONS) -> str:
    """A password-file hash as ``mosquitto_passwd`` (2.x, sha512-pbkdf2) writes it: ``$7$iter$salt$hash``."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def broker_users(passwd: Path) -> set[str]:
    """The usernames in the Mosquitto password file ``passwd`` (empty when it does not exist)."""
    if not passwd.exists():
        return set()
    return {line.split(":", 1)[0] for line in passwd.read_text().splitlines() if ":" in line and not line.startswith("#")}


def set_broker_password(passwd: Path, username: str, password: str, *, tool: str | None = "auto") -> None:
    """Add or replace ``username`` in the Mosquitto password file ``passwd`` (created 0600 if missing).

    Uses ``mosquitto_passwd`` when installed (``tool="auto"``; the password goes through its stdin,
    never its arguments), else writes the same format itself. Either way the file is changed in
    place, so a broker container that bind-mounts the single file sees the change after a reload.
    """
    if ":" in username or not username:
        raise ProvisionError(f"bad broker username {username!r}")
    if tool == "auto":
        tool = shutil.which("mosquitto_passwd")
    passwd.parent.mkdir(parents=True, exist_ok=True)
    if not passwd.exists():
        os.close(os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    if tool:
        done = subprocess.run([tool, str(passwd), username], input=f"{password}\n{password}\n", text=True,
                              capture_output=True, timeout=30, check=False)
        if done.returncode != 0:
            raise ProvisionError(f"mosquitto_passwd failed: {(done.stderr or done.stdout).strip()}")
        return
    entry = f"{username}:{mosquitto_hash(password)}\n"
    with open(passwd, "r+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        lines = [ln for ln in f.read().splitlines(keepends=True) if ln.split(":", 1)[0] != username]
        lines = [ln if ln.endswith("\n") else ln + "\n" for ln in lines] + [entry]
        f.seek(0)
        f.write("".join(lines))
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


def ensure_patient_acl(acl: Path) -> bool:
    """Make sure ``acl`` has the per-patient pattern rules; True when it had to add them."""
    text = acl.read_text() if acl.exists() else ""
    present = {line.strip() for line in text.splitlines()}
    rules = patient_acl_rules()
    if all(rule in present for rule in rules):
        return False
    missing = [rule for rule in rules if rule not in present]
    # 'pattern' rules apply to every client wherever they stand in the file (unlike 'topic' rules after 'user')
    block = "# collectors (username = pseudonym): their own patient's topics only (kinetic provision)\n"
    acl.parent.mkdir(parents=True, exist_ok=True)
    acl.write_text((text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n".join(missing) + "\n")
    return True


# --- where secrets may go ---------------------------------------------------------------------------

def inside_git_worktree(path: Path) -> Path | None:
    """The work tree that contains ``path`` (or would, once created), else None."""
    p = path.expanduser().resolve()
    for parent in (p, *p.parents):
        if (parent / ".git").exists():
            return parent
    return None


def refuse_repo(path: Path, what: str) -> None:
    """Raise :class:`ProvisionError` when ``path`` is (or would be) inside a git work tree."""
    repo = inside_git_worktree(path)
    if repo is not None:
        raise ProvisionError(f"{what} {path} is inside the git work tree {repo}: keep secrets outside any repository "
                             "(e.g. KINETIC_SECRETS_DIR=/srv/kinetic-secrets)")


def env_line(key: str, value: str) -> str:
    """``KEY=value`` for an environment file; refuses values that would need quoting."""
    if not _ENV_VALUE.match(value):
        raise ProvisionError(f"{key} value {value!r} has characters an environment file cannot carry unquoted")
    return f"{key}={value}\n"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file readable by its owner only (0600), replacing any old one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
