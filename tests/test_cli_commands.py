"""The command line as an operator meets it (issue 20): help in plain text for every subcommand, accounts without
a terminal, unknown patients refused, no database created where none was asked for, and the emulated insoles
collecting without paired addresses (through the real Mosquitto)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kinetic.cli import build_parser
from storage.patients import register_patient
from storage.store import SQLiteStore

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "a long enough password"
RST = re.compile(r"``|:(?:mod|func|class|meth|attr|data):`|\w::$", re.MULTILINE)


def kinetic(*args, stdin: str | None = None, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """``kinetic ARGS`` in a child process without a terminal (stdin a pipe, or /dev/null); ``env`` values of None
    remove the variable."""
    merged = {k: v for k, v in (os.environ | {"PYTHONPATH": str(REPO)} | (env or {})).items() if v is not None}
    return subprocess.run([sys.executable, "-m", "kinetic", *map(str, args)], input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL, capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, check=False, env=merged)


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand of ``parser`` (as the words to type)."""
    out = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _commands(sub, (*prefix, name))
    return out


def test_every_help_is_plain_text_and_complete():
    """Issue 20: help texts showed reStructuredText (``x``, :mod:`x`, Examples::); kinetic demo --help ended
    mid-sentence ("... for --days days:")."""
    commands = _commands(build_parser())
    assert len(commands) > 20 and ("dashboard", "add-user") in commands and ("provision", "therapist") in commands
    for words in commands:
        parser = build_parser(words[0] if words else None)
        for word in words:
            parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
        text = parser.format_help()
        assert not RST.search(text), (words, RST.search(text).group(0), text)
    demo = kinetic("demo", "--help").stdout
    description = demo.split("\n\n", 1)[1].split("options:")[0].strip()
    assert description.endswith(".") and "demo-short" in description and "flags" in description


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "kinetic.sqlite"
    store = SQLiteStore(path)
    store.migrate()
    register_patient(store, "p-known", 0)
    store.close()
    return path


def test_add_user_without_a_terminal_says_what_to_do(db):
    """Issue 20: add-user without a terminal crashed with a traceback (EOFError)."""
    run = kinetic("dashboard", "add-user", "ther-x", "--role", "therapist", "--db", db)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "no terminal to ask for the password" in run.stderr and "--password-stdin" in run.stderr
    run = kinetic("dashboard", "add-user", "ther-x", "--role", "therapist", "--db", db, "--password-stdin", stdin="")
    assert run.returncode == 1 and "no password line" in run.stderr and "Traceback" not in run.stderr
    run = kinetic("dashboard", "add-user", "ther-x", "--role", "therapist", "--db", db, "--password-stdin",
                  stdin=PASSWORD + "\n")
    assert run.returncode == 0, run.stderr


def test_unknown_patients_are_refused(db):
    """Issue 20: `add-user --patient no-such` and `assign ther2 no-such` were accepted silently."""
    run = kinetic("dashboard", "add-user", "pat-x", "--role", "patient", "--patient", "no-such", "--db", db,
                  "--password-stdin", stdin=PASSWORD + "\n")
    assert run.returncode == 1 and "unknown patient 'no-such'" in run.stderr
    assert kinetic("dashboard", "add-user", "ther2", "--role", "therapist", "--db", db, "--password-stdin",
                   stdin=PASSWORD + "\n").returncode == 0
    run = kinetic("dashboard", "assign", "ther2", "no-such", "--db", db)
    assert run.returncode == 1 and "unknown patient 'no-such'" in run.stderr
    store = SQLiteStore(db)
    assert store.query("SELECT pseudonym FROM patients")["pseudonym"].tolist() == ["p-known"]  # nothing was made up
    assert kinetic("dashboard", "add-user", "pat-k", "--role", "patient", "--patient", "p-known", "--db", db,
                   "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    assert kinetic("dashboard", "assign", "ther2", "p-known", "--db", db).returncode == 0


def test_no_command_creates_a_database_it_was_not_asked_for(tmp_path):
    """Issue 20: commands without --db silently created an empty kinetic.sqlite in the current folder."""
    missing = tmp_path / "typo.sqlite"
    env = {"KINETIC_DB": None, "KINETIC_DATABASE_URL": None, "KINETIC_DASHBOARD_SECRET": "s" * 40}
    for args in (["dashboard", "--no-mqtt"], ["dashboard", "assign", "t", "p"], ["dashboard", "set-cohort", "p", "c"],
                 ["dashboard", "set-time-zone", "p", "UTC"], ["dashboard", "disable-user", "t"],
                 ["dashboard", "enable-user", "t"]):
        for where in ([], ["--db", missing]):
            run = kinetic(*args, *where, cwd=tmp_path, env=env)
            assert run.returncode == 2 and "no database at" in run.stderr and "Traceback" not in run.stderr, (args, run)
    run = kinetic("dashboard", "add-user", "t", "--role", "therapist", "--password-stdin", stdin=PASSWORD + "\n",
                  cwd=tmp_path, env=env)
    assert run.returncode == 2 and "no database at kinetic.sqlite" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # a new deployment's first account may create the database it names
    run = kinetic("dashboard", "add-user", "t", "--role", "therapist", "--password-stdin", "--db", tmp_path / "new.sqlite",
                  stdin=PASSWORD + "\n", cwd=tmp_path, env=env)
    assert run.returncode == 0 and (tmp_path / "new.sqlite").is_file()


@pytest.mark.services
def test_collect_with_emulated_insoles_needs_no_paired_addresses(tmp_path, mqtt_settings, patient_id):
    """Issue 20: `kinetic collect --emulate-insoles` stopped with "no insoles paired" unless fake addresses were set."""
    env = {"KINETIC_PATIENT": patient_id, "KINETIC_OUTBOX_PATH": str(tmp_path / "outbox.sqlite"),
           "KINETIC_MQTT_URL": mqtt_settings.url, "KINETIC_INSOLE_L": None, "KINETIC_INSOLE_R": None}
    run = kinetic("collect", "--emulate-insoles", "--config", tmp_path / "none.toml", "--duration-s", "4",
                  "--status-interval-s", "1", env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "no insoles paired" not in run.stderr
    assert "everything was delivered to the broker" in run.stdout
    assert re.search(r"L[^\n]*\d+ Hz|frames", run.stderr), run.stderr[-1000:]  # the status lines report data


def test_bad_configuration_and_unreachable_services_say_what_is_wrong_without_a_traceback(tmp_path):
    """A deployment's mistakes (an impossible detection setting, a broker address with nothing behind it) end the
    command with exit status 2 and one line naming what was wrong; ``-v`` keeps the traceback for developers."""
    bad = tmp_path / "detection.toml"
    bad.write_text("[detection]\ncusum_h = -3\n")
    db = tmp_path / "kc.sqlite"
    run = kinetic("process", "--db", db, env={"KINETIC_DETECTION_CONFIG": str(bad)})
    assert run.returncode == 2, run.stderr
    assert "detection settings" in run.stderr and "Traceback" not in run.stderr
    verbose = kinetic("-v", "process", "--db", db, env={"KINETIC_DETECTION_CONFIG": str(bad)})
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr
    unreachable = kinetic("process", "--db", db, "--mqtt-url", "mqtt://127.0.0.1:1",
                          env={"KINETIC_DETECTION_CONFIG": None})
    assert unreachable.returncode == 2
    assert "cannot reach the broker at mqtt://127.0.0.1:1" in unreachable.stderr and "Traceback" not in unreachable.stderr
