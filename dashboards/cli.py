"""``kinetic dashboard`` — serve the dashboards, and manage their accounts.

::

    kinetic dashboard --db kinetic.sqlite [--host 127.0.0.1] [--port 8080]   serve
    kinetic dashboard add-user NAME --role therapist|patient|researcher|admin [--patient P] [--display-name D]
    kinetic dashboard assign THERAPIST PATIENT                               let a therapist see a patient
    kinetic dashboard set-cohort PATIENT COHORT                              research cohort of a patient
    kinetic dashboard set-time-zone PATIENT ZONE                             count the patient's days in ZONE
    kinetic dashboard disable-user NAME / enable-user NAME

Environment: ``KINETIC_DASHBOARD_SECRET`` (required to serve; at least 32 characters, e.g.
``python -c 'import secrets; print(secrets.token_urlsafe(48))'``), ``KINETIC_DB`` (default
database), ``KINETIC_DATABASE_URL`` (``postgresql://...``: use PostgreSQL instead of SQLite),
``KINETIC_MQTT_URL`` (broker for collector status and the live view). New passwords are
read from the terminal, or from standard input with ``--password-stdin``; never from arguments.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from dashboards.auth import AccountError, add_account, assign_patient, set_disabled
from insole_common.errors import ValidationError
from research import deid
from storage.accounts import accounts_n
from storage.archive import RawArchive
from storage.open import DatabaseMissingError, open_store as _open_store
from storage.patients import patient_exists, set_patient_time_zone
from storage.store import Store


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS,
                        help="SQLite database of the processing service (env KINETIC_DB; default kinetic.sqlite)")
    common.add_argument("--dsn", default=argparse.SUPPRESS,
                        help="PostgreSQL DSN instead of --db (env KINETIC_DATABASE_URL)")
    common.add_argument("--pg-schema", default=argparse.SUPPRESS, help="PostgreSQL schema (default public)")

    p = sub.add_parser("dashboard", parents=[common], help="therapist, patient and researcher dashboards (web app)",
                       description=__doc__.split("\n\n")[0], epilog=__doc__.split("::")[1] if __doc__ else None,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="port (default %(default)s)")
    p.add_argument("--mqtt-url", default=None, help="broker for status and live view (env KINETIC_MQTT_URL)")
    p.add_argument("--no-mqtt", action="store_true", help="do not connect to a broker (status shows as unknown)")
    p.add_argument("--https-only-cookies", action="store_true", help="mark the session cookie Secure (behind HTTPS)")
    p.add_argument("--archive", default=os.environ.get("KINETIC_ARCHIVE", "kinetic-archive"),
                   help="raw session archive of the processing service, for researcher downloads "
                   "(env KINETIC_ARCHIVE; default: %(default)s)")
    p.set_defaults(func=serve)
    acts = p.add_subparsers(dest="action", metavar="ACTION")

    a = acts.add_parser("add-user", parents=[common], help="create an account (password asked, never an argument)")
    a.add_argument("username")
    a.add_argument("--role", required=True, choices=("therapist", "patient", "researcher", "admin"))
    a.add_argument("--patient", help="the patient's pseudonym (role patient)")
    a.add_argument("--display-name", default="")
    a.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    a.set_defaults(func=add_user)

    s = acts.add_parser("assign", parents=[common], help="let a therapist see a patient")
    s.add_argument("therapist")
    s.add_argument("patient")
    s.set_defaults(func=assign)

    c = acts.add_parser("set-cohort", parents=[common], help="put a patient into a research cohort")
    c.add_argument("patient")
    c.add_argument("cohort")
    c.set_defaults(func=set_cohort)

    z = acts.add_parser("set-time-zone", parents=[common],
                        help="count a patient's days and weeks in a time zone (an IANA name such as Europe/Berlin)")
    z.add_argument("patient")
    z.add_argument("zone", help="IANA time zone, e.g. Pacific/Auckland (default of every patient: UTC)")
    z.set_defaults(func=set_time_zone)

    for name, flag in (("disable-user", True), ("enable-user", False)):
        d = acts.add_parser(name, parents=[common], help=f"{name.split('-')[0]} an account")
        d.add_argument("username")
        d.set_defaults(func=lambda args, flag=flag: toggle(args, flag))


def open_store(args: argparse.Namespace, *, create: bool = True) -> Store:
    """The store named by the command's ``--db`` / ``--dsn`` / ``--pg-schema`` (see :func:`storage.open.open_store`).
    ``create=False``: a SQLite file that does not exist is refused (exit status 2 with a message), not created."""
    try:
        return _open_store(db=getattr(args, "db", None), dsn=getattr(args, "dsn", None),
                           pg_schema=getattr(args, "pg_schema", None), create=create)
    except DatabaseMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _existing_store(args: argparse.Namespace) -> Store:
    """The command's store, which must exist: serving and changing stored accounts or patients never create one."""
    return open_store(args, create=False)


def serve(args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415 - the web server only when serving; `kinetic --help` loads this module

    from dashboards.app import MIN_SECRET_CHARS, create_app  # noqa: PLC0415 - the web stack (fastapi) only when serving
    from dashboards.live import LiveFeed, MqttLiveFeed  # noqa: PLC0415 - the MQTT client (paho) only when serving
    from transport.mqtt import MqttError, MqttSettings  # noqa: PLC0415 - the MQTT client (paho) only when serving

    secret = os.environ.get("KINETIC_DASHBOARD_SECRET", "")
    if len(secret) < MIN_SECRET_CHARS:
        print(f"set KINETIC_DASHBOARD_SECRET to a random string of at least {MIN_SECRET_CHARS} characters, e.g.\n"
              "  export KINETIC_DASHBOARD_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(48))')",
              file=sys.stderr)
        return 2
    store = _existing_store(args)
    feed: LiveFeed = LiveFeed()
    if not args.no_mqtt:
        settings = MqttSettings.from_env(args.mqtt_url)
        try:
            mqtt_feed = MqttLiveFeed(settings, client_id="kinetic-dashboard-" + os.urandom(3).hex())
            mqtt_feed.start()
            feed = mqtt_feed
        except MqttError as exc:
            print(f"warning: {exc}; collector status and live view are unavailable", file=sys.stderr)
    if accounts_n(store) == 0:
        print("no accounts yet: create one with  kinetic dashboard add-user NAME --role therapist", file=sys.stderr)
    app = create_app(store, secret=secret, feed=feed, https_only=args.https_only_cookies,
                     archive=RawArchive(args.archive))
    print(f"kinetic dashboard on http://{args.host}:{args.port}/  (API docs: /api/docs)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", proxy_headers=False)
    finally:
        feed.stop()
    return 0


def _read_password(args: argparse.Namespace) -> str:
    """The new password: the first line of standard input (``--password-stdin``), else asked twice on the terminal.
    AccountError when there is none to read (no terminal, end of input)."""
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line.strip():
            raise AccountError("--password-stdin: standard input had no password line")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise AccountError("no terminal to ask for the password: pipe it in with --password-stdin, "
                           "e.g. printf '%s\\n' \"$PASSWORD\" | kinetic dashboard add-user NAME --role ROLE --password-stdin")
    try:
        first = getpass.getpass("new password: ")
        again = getpass.getpass("again: ")
    except EOFError as exc:
        raise AccountError("the password prompt was closed (end of input); nothing was created") from exc
    if first != again:
        raise AccountError("the passwords differ; nothing was created")
    return first


def add_user(args: argparse.Namespace) -> int:
    # a new deployment's first account may create the database, but only one named with --db or KINETIC_DB
    store = open_store(args, create=getattr(args, "db", None) is not None or bool(os.environ.get("KINETIC_DB")))
    try:
        password = _read_password(args)
        add_account(store, args.username, args.role, password, display_name=args.display_name, patient=args.patient)
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"created {args.role} account {args.username!r}")
    return 0


def assign(args: argparse.Namespace) -> int:
    try:
        assign_patient(_existing_store(args), args.therapist, args.patient)
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.therapist} now sees {args.patient}")
    return 0


def _patient_store(args: argparse.Namespace) -> Store | None:
    """The existing store when it knows ``args.patient``; else None, with the error printed."""
    store = _existing_store(args)
    if patient_exists(store, args.patient):
        return store
    print(f"error: unknown patient {args.patient!r}", file=sys.stderr)
    return None


def set_cohort(args: argparse.Namespace) -> int:
    store = _patient_store(args)
    if store is None:
        return 1
    deid.set_cohort(store, args.patient, args.cohort)
    print(f"{args.patient} is in cohort {args.cohort!r}")
    return 0


def set_time_zone(args: argparse.Namespace) -> int:
    """Days and weeks of sessions closed from now on are counted in the zone (stored ones keep their day)."""
    store = _patient_store(args)
    if store is None:
        return 1
    try:
        set_patient_time_zone(store, args.patient, args.zone)
    except ValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.patient}'s days are counted in {args.zone}")
    return 0


def toggle(args: argparse.Namespace, disabled: bool) -> int:
    if not set_disabled(_existing_store(args), args.username, disabled):
        print(f"error: no account {args.username!r}", file=sys.stderr)
        return 1
    print(f"{args.username} {'disabled' if disabled else 'enabled'}")
    return 0
