"""``kinetic provision`` — accounts for a new patient's home gateway, a therapist, a server service.

::

    kinetic provision patient  [--broker-url mqtts://broker.example.org:8883] [--left ADDR --right ADDR]
    kinetic provision patient  --rotate --pseudonym p-3f9c0a1b2c4d          new broker password, new bundle
    kinetic provision therapist NAME [--display-name "Dr Ada"] [--assign PSEUDONYM ...] [--reset]
    kinetic provision service  kinetic-processing|kinetic-dashboard           broker account of a server service
    kinetic provision device   kc16-f04b43000001 --pseudonym P --side L [--reassign]   an insole's owner

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
import os
import secrets
import shutil
import sys
import time
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

from collector.config import CollectorSettings, load_settings, save_settings
from dashboards.auth import AccountError, add_account, assign_patient, set_password
from dashboards.cli import open_store
from insole_common.errors import InsoleError
from insole_common.topics import check_patient
from kinetic.broker_files import (
    ProvisionError,
    broker_users,
    ensure_patient_acl,
    env_line,
    refuse_repo,
    set_broker_password,
    write_private,
)
from storage import patients as patient_table
from transport.mqtt import MqttError, MqttSettings

SERVICE_ACCOUNTS = ("kinetic-processing", "kinetic-dashboard")
GATEWAY_DIR = Path("/etc/kinetic")
GATEWAY_OUTBOX = Path("/var/lib/kinetic/outbox.sqlite")


@dataclass(frozen=True)
class GatewayBundle:
    pseudonym: str
    folder: Path
    config: Path
    env: Path
    ca: Path | None


# --- the three things to provision ------------------------------------------------------------------

def new_pseudonym(taken: AbstractSet[str] = frozenset()) -> str:
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
    try:
        MqttSettings.from_url(broker_url)
    except MqttError as exc:
        raise ProvisionError(str(exc)) from exc
    refuse_repo(out, "output folder")
    refuse_repo(passwd, "password file")
    pseudonym = _choose_pseudonym(broker_users(passwd), pseudonym, rotate=rotate, store=store)
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
    env = folder / "collector.env"
    # first the bundle, then the account: no account without its password on disk
    write_private(env, _gateway_env(broker_url, pseudonym, password, gateway_dir, with_ca=ca_target is not None))
    set_broker_password(passwd, pseudonym, password, tool=tool)
    if store is not None:
        patient_table.register_patient(store, pseudonym, time.time_ns() // 1000)
    return GatewayBundle(pseudonym, folder, config, env, ca_target)


def _choose_pseudonym(users: set[str], pseudonym: str | None, *, rotate: bool, store) -> str:
    """A new random pseudonym (none given), or the given one when the broker accounts allow what is asked."""
    if pseudonym is None:
        if rotate:
            raise ProvisionError("--rotate needs the --pseudonym whose password to replace")
        return new_pseudonym(users | (patient_table.pseudonyms(store) if store is not None else set()))
    check_patient(pseudonym)
    if pseudonym in SERVICE_ACCOUNTS:
        raise ProvisionError(f"{pseudonym!r} is a service account")
    if pseudonym in users and not rotate:
        raise ProvisionError(f"broker account {pseudonym!r} exists already; --rotate replaces its password")
    if rotate and pseudonym not in users:
        raise ProvisionError(f"no broker account {pseudonym!r} to rotate")
    return pseudonym


def _gateway_env(broker_url: str, pseudonym: str, password: str, gateway_dir: Path, *, with_ca: bool) -> str:
    """The gateway's ``collector.env`` (secret: the broker password)."""
    text = "# Kinetic Chain collector of one patient. Secret: keep mode 0600, never commit.\n"
    text += env_line("KINETIC_MQTT_URL", broker_url)
    text += env_line("KINETIC_MQTT_USERNAME", pseudonym)
    text += env_line("KINETIC_MQTT_PASSWORD", password)
    if with_ca:
        text += env_line("KINETIC_MQTT_CA_FILE", str(gateway_dir / "ca.crt"))
    return text + env_line("KINETIC_COLLECTOR_CONFIG", str(gateway_dir / "collector.toml"))


def provision_service(*, passwd: Path, name: str, tool: str | None = "auto") -> str:
    """A new random broker password for a server service account; returns it (show it once)."""
    if name not in SERVICE_ACCOUNTS:
        raise ProvisionError(f"service must be one of {SERVICE_ACCOUNTS}")
    refuse_repo(passwd, "password file")
    password = secrets.token_urlsafe(32)
    set_broker_password(passwd, name, password, tool=tool)
    return password


def provision_therapist(store, username: str, *, password: str | None = None, display_name: str = "",
                        assign: tuple[str, ...] = (), reset: bool = False) -> str | None:
    """A therapist account (dashboards.auth.add_account), or with ``reset`` a new password for an existing
    one; returns the generated password when none was given."""
    generated = None
    if password is None:
        password = generated = secrets.token_urlsafe(15)
    if reset:
        if patient_table.account_role(store, username) != "therapist":
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

    dv = acts.add_parser("device", help="record which patient an insole belongs to (its data is refused elsewhere)")
    dv.add_argument("device_id", help="the device id the collector reports, e.g. kc16-f04b43000001")
    dv.add_argument("--pseudonym", required=True, help="the patient it belongs to")
    dv.add_argument("--side", choices=("L", "R"), required=True, help="the foot it is worn on")
    dv.add_argument("--reassign", action="store_true", help="move it from the patient it belongs to now")
    dv.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database (env KINETIC_DB; default kinetic.sqlite)")
    dv.add_argument("--dsn", default=argparse.SUPPRESS, help="PostgreSQL DSN instead (env KINETIC_DATABASE_URL)")
    dv.add_argument("--pg-schema", default=argparse.SUPPRESS, help="PostgreSQL schema (default public)")
    dv.set_defaults(func=cmd_device)


def _passwd(args) -> Path:
    if args.passwd:
        return args.passwd
    secrets_dir = _secrets_dir()
    if secrets_dir is None:
        raise ProvisionError("give --passwd FILE or set KINETIC_SECRETS_DIR")
    return secrets_dir / "broker" / "passwd"


def _reload_hint() -> str:
    return "reload the broker so it reads the password file: docker compose kill -s SIGHUP mosquitto"


def cmd_patient(args) -> int:
    try:
        if not args.broker_url:
            raise ProvisionError("give --broker-url mqtts://HOST:8883 (or set KINETIC_PUBLIC_MQTT_URL)")
        secrets_dir = _secrets_dir()
        out = args.out or (secrets_dir / "gateways" if secrets_dir else None)
        if out is None:
            raise ProvisionError("give --out FOLDER or set KINETIC_SECRETS_DIR")
        ca = args.ca_file
        if ca is None and secrets_dir and (secrets_dir / "broker" / "certs" / "ca.crt").exists():
            ca = secrets_dir / "broker" / "certs" / "ca.crt"
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


def cmd_device(args) -> int:
    """Record (or, with --reassign, move) an insole's owner; exit 1 when it belongs to someone else."""
    store = open_store(args)
    store.migrate()
    try:
        store.assign_device(args.device_id, check_patient(args.pseudonym), args.side, time_us=time.time_ns() // 1000,
                            reassign=args.reassign)
        message, code = f"device {args.device_id} ({args.side}) belongs to {args.pseudonym}", 0
    except InsoleError as exc:
        message, code = f"error: {exc}", 1
    print(message, file=sys.stderr if code else sys.stdout)
    return code
