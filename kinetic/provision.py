"""``kinetic provision`` — accounts for a new patient's home gateway, a therapist, a server service.

::

    kinetic provision patient  [--broker-url mqtts://broker.example.org:8883] [--left ADDR --right ADDR]
    kinetic provision patient  --rotate --pseudonym p-3f9c0a1b2c4d          new broker password, new bundle
    kinetic provision therapist NAME [--display-name "Dr Ada"] [--assign PSEUDONYM ...] [--reset]
    kinetic provision service  kinetic-processing|kinetic-dashboard           broker account of a server service

``patient`` makes a random pseudonym (``secrets``, never derived from anything about the person),
a broker account named after it with a random password, in Mosquitto's own password-file format
(``mosquitto_passwd`` when installed, else the same PBKDF2-SHA512 ``$7$`` entries written here),
checks that the ACL gives that username its own patient's topics (the shipped
``deploy/mosquitto/acl`` does, with ``%u`` patterns), and writes the gateway's bundle::

    OUT/PSEUDONYM/collector.toml   the collector's config file (collector.config), no secrets
    OUT/PSEUDONYM/collector.env    KINETIC_MQTT_* for the gateway's systemd unit, mode 0600
    OUT/PSEUDONYM/ca.crt           the broker's CA certificate, when there is one

Copy the bundle to the gateway's ``/etc/kinetic/`` (deploy/raspberry-pi/README.md), then reload the
broker so that it reads the new password file (``docker compose kill -s SIGHUP mosquitto``).

Paths default from ``KINETIC_SECRETS_DIR`` (the folder outside the repository that
docker-compose.yml mounts): ``broker/passwd``, ``broker/certs/ca.crt`` and ``gateways/``.
Nothing secret is printed except a new therapist's initial password (once) and a service's
broker password (once, for the compose env file); nothing is written inside a git work tree.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from insole_common.errors import InsoleError
from insole_common.topics import check_patient

#: the ACL rules that give each collector (username = pseudonym) its own patient's topics; the
#: same lines as deploy/mosquitto/acl (tests/test_provision.py checks that they stay the same)
PATIENT_ACL_RULES = (
    "pattern write kc/v1/+/%u/raw/+",
    "pattern write kc/v1/+/%u/session",
    "pattern write kc/v1/+/%u/status/#",
    "pattern read kc/v1/+/%u/control",
)
SERVICE_ACCOUNTS = ("kinetic-processing", "kinetic-dashboard")
#: PBKDF2 iterations of mosquitto_passwd's default sha512-pbkdf2 ($7$); the passwords are 256-bit random
#: strings, so the (low) count costs a guesser nothing it could use, and keeps the broker's per-connect check cheap
MOSQUITTO_PBKDF2_ITERATIONS = 101
GATEWAY_DIR = Path("/etc/kinetic")
GATEWAY_OUTBOX = Path("/var/lib/kinetic/outbox.sqlite")
_ENV_VALUE = re.compile(r"^[A-Za-z0-9_.:/@%+=-]*$")


class ProvisionError(InsoleError):
    """Provisioning cannot do what was asked (existing account, path inside a repository, bad ACL)."""

    reason = "provision"


@dataclass(frozen=True)
class GatewayBundle:
    pseudonym: str
    folder: Path
    config: Path
    env: Path
    ca: Path | None


# --- Mosquitto password file -----------------------------------------------------------------------

def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = MOSQUITTO_PBKDF2_ITERATIONS) -> str:
    """A password-file hash as ``mosquitto_passwd`` (2.x, sha512-pbkdf2) writes it: ``$7$iter$salt$hash``."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def broker_users(passwd: Path) -> set[str]:
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
                              capture_output=True, timeout=30)
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
    if all(rule in present for rule in PATIENT_ACL_RULES):
        return False
    missing = [rule for rule in PATIENT_ACL_RULES if rule not in present]
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


def _refuse_repo(path: Path, what: str) -> None:
    repo = inside_git_worktree(path)
    if repo is not None:
        raise ProvisionError(f"{what} {path} is inside the git work tree {repo}: keep secrets outside any repository "
                             "(e.g. KINETIC_SECRETS_DIR=/srv/kinetic-secrets)")


def _env_line(key: str, value: str) -> str:
    if not _ENV_VALUE.match(value):
        raise ProvisionError(f"{key} value {value!r} has characters an environment file cannot carry unquoted")
    return f"{key}={value}\n"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file readable by its owner only (0600), replacing any old one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


# --- the three things to provision ------------------------------------------------------------------

def new_pseudonym(taken: set[str] = frozenset()) -> str:
    """A random pseudonym (48 bits from ``secrets``), not one in ``taken``."""
    while True:
        candidate = "p-" + secrets.token_hex(6)
        if candidate not in taken:
            return candidate


def provision_patient(*, passwd: Path, out: Path, broker_url: str, ca_file: Path | None = None, acl: Path | None = None,
                      pseudonym: str | None = None, rotate: bool = False, insoles: dict[str, str] | None = None,
                      profile: str = "kc16", gateway_dir: Path = GATEWAY_DIR, outbox_path: Path = GATEWAY_OUTBOX,
                      store=None, tool: str | None = "auto") -> GatewayBundle:
    """Broker account + collector bundle for one patient's gateway; see the module docstring."""
    from collector.config import CollectorSettings, load_settings, save_settings
    from transport.mqtt import MqttError, MqttSettings

    try:
        MqttSettings.from_url(broker_url)
    except MqttError as exc:
        raise ProvisionError(str(exc)) from exc
    _refuse_repo(out, "output folder")
    _refuse_repo(passwd, "password file")
    users = broker_users(passwd)
    if pseudonym is None:
        if rotate:
            raise ProvisionError("--rotate needs the --pseudonym whose password to replace")
        taken = users | (set(store.query("SELECT pseudonym FROM patients")["pseudonym"]) if store is not None else set())
        pseudonym = new_pseudonym(taken)
    else:
        check_patient(pseudonym)
        if pseudonym in SERVICE_ACCOUNTS:
            raise ProvisionError(f"{pseudonym!r} is a service account")
        if pseudonym in users and not rotate:
            raise ProvisionError(f"broker account {pseudonym!r} exists already; --rotate replaces its password")
        if rotate and pseudonym not in users:
            raise ProvisionError(f"no broker account {pseudonym!r} to rotate")
    if acl is not None and ensure_patient_acl(acl):
        print(f"added the per-patient rules to {acl}", file=sys.stderr)

    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = out / pseudonym
    folder.mkdir(exist_ok=True)
    os.chmod(folder, 0o700)
    config = folder / "collector.toml"
    settings = CollectorSettings(patient=pseudonym, profile=profile, insoles=dict(insoles or {}),
                                 outbox_path=outbox_path, outbox_budget_mb=512.0)
    if rotate and config.exists():  # keep what pairing wrote on the gateway's copy, if it was brought back
        settings = load_settings(config, environ={})
    save_settings(settings, config)
    ca_target = None
    if ca_file is not None:
        ca_target = folder / "ca.crt"
        shutil.copyfile(ca_file, ca_target)
        os.chmod(ca_target, 0o644)

    password = secrets.token_urlsafe(32)
    env_text = "# Kinetic Chain collector of one patient. Secret: keep mode 0600, never commit.\n"
    env_text += _env_line("KINETIC_MQTT_URL", broker_url)
    env_text += _env_line("KINETIC_MQTT_USERNAME", pseudonym)
    env_text += _env_line("KINETIC_MQTT_PASSWORD", password)
    if ca_target is not None:
        env_text += _env_line("KINETIC_MQTT_CA_FILE", str(gateway_dir / "ca.crt"))
    env_text += _env_line("KINETIC_COLLECTOR_CONFIG", str(gateway_dir / "collector.toml"))
    env = folder / "collector.env"
    _write_private(env, env_text)  # first the bundle, then the account: no account without its password on disk
    set_broker_password(passwd, pseudonym, password, tool=tool)
    if store is not None:
        store.execute("INSERT INTO patients (pseudonym, created_us) VALUES (?, ?) ON CONFLICT (pseudonym) DO NOTHING",
                      (pseudonym, time.time_ns() // 1000))
    return GatewayBundle(pseudonym, folder, config, env, ca_target)


def provision_service(*, passwd: Path, name: str, tool: str | None = "auto") -> str:
    """A new random broker password for a server service account; returns it (show it once)."""
    if name not in SERVICE_ACCOUNTS:
        raise ProvisionError(f"service must be one of {SERVICE_ACCOUNTS}")
    _refuse_repo(passwd, "password file")
    password = secrets.token_urlsafe(32)
    set_broker_password(passwd, name, password, tool=tool)
    return password


def provision_therapist(store, username: str, *, password: str | None = None, display_name: str = "",
                        assign: tuple[str, ...] = (), reset: bool = False) -> str | None:
    """A therapist account (dashboards.auth.add_account), or with ``reset`` a new password for an existing
    one; returns the generated password when none was given."""
    from dashboards.auth import AccountError, add_account, assign_patient, set_password

    generated = None
    if password is None:
        password = generated = secrets.token_urlsafe(15)
    if reset:
        role = store.query("SELECT role FROM accounts WHERE username = ?", (username,))
        if role.empty or role.iloc[0]["role"] != "therapist":
            raise AccountError(f"{username!r} is not a therapist account")
        set_password(store, username, password)
    else:
        add_account(store, username, "therapist", password, display_name=display_name)
    for patient in assign:
        assign_patient(store, username, patient)
    return generated


# --- command line -----------------------------------------------------------------------------------

def _secrets_dir() -> Path | None:
    value = os.environ.get("KINETIC_SECRETS_DIR")
    return Path(value).expanduser() if value else None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("provision", help="accounts and config for a patient's gateway, a therapist or a service",
                       description=__doc__.split("\n\n")[0], epilog=__doc__.split("::")[1].strip("\n").split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    acts = p.add_subparsers(dest="what", metavar="WHAT", required=True)

    broker = argparse.ArgumentParser(add_help=False)
    broker.add_argument("--passwd", type=Path, default=None,
                        help="Mosquitto password file (default $KINETIC_SECRETS_DIR/broker/passwd)")

    pt = acts.add_parser("patient", parents=[broker], help="pseudonym, broker account and collector bundle")
    pt.add_argument("--broker-url", default=os.environ.get("KINETIC_PUBLIC_MQTT_URL"),
                    help="the broker as the gateway reaches it, mqtts://host:8883 (env KINETIC_PUBLIC_MQTT_URL)")
    pt.add_argument("--ca-file", type=Path, default=None,
                    help="broker CA certificate to ship (default $KINETIC_SECRETS_DIR/broker/certs/ca.crt if present)")
    pt.add_argument("--acl", type=Path, default=None, help="Mosquitto ACL file to check (and complete) for patient rules")
    pt.add_argument("--out", type=Path, default=None, help="where bundles go (default $KINETIC_SECRETS_DIR/gateways)")
    pt.add_argument("--pseudonym", help="with --rotate: the existing patient (new ones always get a random pseudonym)")
    pt.add_argument("--rotate", action="store_true", help="replace the broker password of --pseudonym")
    pt.add_argument("--left", help="left insole's Bluetooth address, if known (else `kinetic pair` on the gateway)")
    pt.add_argument("--right", help="right insole's Bluetooth address, if known")
    pt.add_argument("--profile", default="kc16", help="insole profile (default %(default)s)")
    pt.add_argument("--gateway-dir", type=Path, default=GATEWAY_DIR,
                    help="where the bundle lives on the gateway (default %(default)s)")
    pt.add_argument("--outbox-path", type=Path, default=GATEWAY_OUTBOX, help="outbox on the gateway (default %(default)s)")
    pt.add_argument("--db", default=argparse.SUPPRESS, help="also register the pseudonym in this SQLite database")
    pt.add_argument("--dsn", default=argparse.SUPPRESS, help="... or this PostgreSQL (env KINETIC_DATABASE_URL)")
    pt.add_argument("--pg-schema", default=argparse.SUPPRESS, help="PostgreSQL schema (default public)")
    pt.set_defaults(func=cmd_patient)

    th = acts.add_parser("therapist", help="a dashboard account for a therapist")
    th.add_argument("username")
    th.add_argument("--display-name", default="")
    th.add_argument("--assign", action="append", default=[], metavar="PSEUDONYM", help="a patient they see (repeatable)")
    th.add_argument("--reset", action="store_true", help="a new password for an existing therapist account")
    th.add_argument("--password-stdin", action="store_true",
                    help="read the password from stdin (default: a random one, printed once)")
    th.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database (env KINETIC_DB; default kinetic.sqlite)")
    th.add_argument("--dsn", default=argparse.SUPPRESS, help="PostgreSQL DSN instead (env KINETIC_DATABASE_URL)")
    th.add_argument("--pg-schema", default=argparse.SUPPRESS, help="PostgreSQL schema (default public)")
    th.set_defaults(func=cmd_therapist)

    sv = acts.add_parser("service", parents=[broker], help="broker account of kinetic-processing or kinetic-dashboard")
    sv.add_argument("name", choices=SERVICE_ACCOUNTS)
    sv.set_defaults(func=cmd_service)


def _passwd(args) -> Path:
    if args.passwd:
        return args.passwd
    if _secrets_dir() is None:
        raise ProvisionError("give --passwd FILE or set KINETIC_SECRETS_DIR")
    return _secrets_dir() / "broker" / "passwd"


def _reload_hint() -> str:
    return "reload the broker so it reads the password file: docker compose kill -s SIGHUP mosquitto"


def cmd_patient(args) -> int:
    from dashboards.cli import open_store

    try:
        if not args.broker_url:
            raise ProvisionError("give --broker-url mqtts://HOST:8883 (or set KINETIC_PUBLIC_MQTT_URL)")
        out = args.out or (_secrets_dir() / "gateways" if _secrets_dir() else None)
        if out is None:
            raise ProvisionError("give --out FOLDER or set KINETIC_SECRETS_DIR")
        ca = args.ca_file
        if ca is None and _secrets_dir() and (_secrets_dir() / "broker" / "certs" / "ca.crt").exists():
            ca = _secrets_dir() / "broker" / "certs" / "ca.crt"
        insoles = {side: addr.upper() for side, addr in (("L", args.left), ("R", args.right)) if addr}
        wants_store = any(hasattr(args, a) for a in ("db", "dsn")) or os.environ.get("KINETIC_DATABASE_URL")
        store = open_store(args) if wants_store else None
        bundle = provision_patient(passwd=_passwd(args), out=out, broker_url=args.broker_url, ca_file=ca, acl=args.acl,
                                   pseudonym=args.pseudonym, rotate=args.rotate, insoles=insoles, profile=args.profile,
                                   gateway_dir=args.gateway_dir, outbox_path=args.outbox_path, store=store)
    except (ProvisionError, InsoleError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"patient {bundle.pseudonym}: broker account {'password replaced' if args.rotate else 'created'}")
    print(f"gateway bundle: {bundle.folder}/ (collector.toml, collector.env [secret, 0600]"
          + (", ca.crt" if bundle.ca else "") + f") -> copy to {args.gateway_dir}/ on the gateway")
    print(_reload_hint())
    return 0


def cmd_therapist(args) -> int:
    from dashboards.auth import AccountError
    from dashboards.cli import open_store

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    try:
        generated = provision_therapist(open_store(args), args.username, password=password,
                                        display_name=args.display_name, assign=tuple(args.assign), reset=args.reset)
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{'new password for' if args.reset else 'created'} therapist account {args.username!r}"
          + (f", sees {', '.join(args.assign)}" if args.assign else ""))
    if generated:
        print(f"initial password (shown once, hand it over privately): {generated}")
    return 0


def cmd_service(args) -> int:
    try:
        password = provision_service(passwd=_passwd(args), name=args.name)
    except (ProvisionError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    var = "KINETIC_PROCESSING_MQTT_PASSWORD" if args.name == "kinetic-processing" else "KINETIC_DASHBOARD_MQTT_PASSWORD"
    print(f"broker account {args.name}: put this line into the compose env file (shown once):")
    print(f"{var}={password}")
    print(_reload_hint())
    return 0
