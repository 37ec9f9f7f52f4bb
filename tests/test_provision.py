"""``kinetic provision`` against a real Mosquitto running the shipped secure configuration.

The broker starts with only the processing service's account; patients are provisioned while
it runs (one through ``mosquitto_passwd``, one through our own writer of its format) and the
broker is reloaded with SIGHUP, as docs/security.md says. The gateway bundle's collector.toml
is read back with ``collector.config`` and its collector.env is what the collector connects with.
"""

from __future__ import annotations

import base64
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from collector.config import load_settings
from dashboards.auth import authenticate
from insole_common import topics
from kinetic.broker_files import (
    PATIENT_ACL_RULES,
    ProvisionError,
    broker_users,
    ensure_patient_acl,
    mosquitto_hash,
    patient_acl_rules,
)
from kinetic.cli import main
from kinetic.provision import new_pseudonym, provision_patient, provision_service, provision_therapist
from storage.store import SQLiteStore
from tests.conftest import root_in_use
from tests.test_broker_security import (
    DEPLOY,
    Listener,
    client_as,
    make_certs,
    publish_and_settle,
    start_secure_mosquitto,
)
from transport.mqtt import MqttConnectError, MqttSettings

SHIPPED_ACL = DEPLOY / "mosquitto" / "acl"


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    work = tmp_path_factory.mktemp("provision-broker")
    make_certs(work)
    # the shipped ACL without its per-patient rules: provisioning must put them back
    # (the service rules under this test run's topic root, tests/conftest.py)
    (work / "acl").write_text("\n".join(line for line in SHIPPED_ACL.read_text().splitlines()
                                        if line.strip() not in PATIENT_ACL_RULES).replace(" kc/v1/", f" {root_in_use()}/")
                              + "\n")
    processing_pw = provision_service(passwd=work / "passwd", name="kinetic-processing")
    proc, tls = start_secure_mosquitto(work)
    out = tmp_path_factory.mktemp("gateways")
    url = f"mqtts://127.0.0.1:{tls.port}"
    a = provision_patient(passwd=work / "passwd", out=out, broker_url=url, ca_file=work / "certs" / "ca.crt",
                          acl=work / "acl", insoles={"L": "F0:00:00:00:00:01", "R": "F0:00:00:00:00:02"})
    b = provision_patient(passwd=work / "passwd", out=out, broker_url=url, ca_file=work / "certs" / "ca.crt",
                          acl=work / "acl", tool=None)  # our own writer of mosquitto_passwd's format
    proc.send_signal(signal.SIGHUP)  # the broker re-reads the password file and the ACL
    time.sleep(0.5)
    yield {"work": work, "tls": tls, "out": out, "url": url, "a": a, "b": b, "proc": proc,
           "processing": processing_pw}
    proc.terminate()
    proc.wait(5)


def collector_client(bundle, monkeypatch):
    """Connect exactly as the gateway would: the bundle's collector.env in the environment."""
    env = read_env(bundle.env)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KINETIC_MQTT_CA_FILE", str(bundle.ca))  # on the gateway: /etc/kinetic/ca.crt
    settings = MqttSettings.from_env()
    return client_as(settings, settings.username, settings.password)


def test_bundle_is_what_the_collector_loads(broker):
    a = broker["a"]
    assert re.fullmatch(r"p-[0-9a-f]{12}", a.pseudonym) and a.folder.name == a.pseudonym
    settings = load_settings(a.config, environ={}).validated()
    assert settings.patient == a.pseudonym
    assert settings.insoles == {"L": "F0:00:00:00:00:01", "R": "F0:00:00:00:00:02"}
    assert str(settings.outbox_path) == "/var/lib/kinetic/outbox.sqlite"
    assert "PASSWORD" not in a.config.read_text().upper()  # no secret in the config file
    env = read_env(a.env)
    assert env["KINETIC_MQTT_USERNAME"] == a.pseudonym and env["KINETIC_MQTT_URL"] == broker["url"]
    assert len(env["KINETIC_MQTT_PASSWORD"]) >= 40
    assert env["KINETIC_MQTT_CA_FILE"] == "/etc/kinetic/ca.crt"
    assert env["KINETIC_COLLECTOR_CONFIG"] == "/etc/kinetic/collector.toml"
    assert stat.S_IMODE(a.env.stat().st_mode) == 0o600 and stat.S_IMODE(a.folder.stat().st_mode) == 0o700
    assert a.ca.read_bytes() == (broker["work"] / "certs" / "ca.crt").read_bytes()
    # the password file holds hashes in Mosquitto's format, never the password
    passwd = (broker["work"] / "passwd").read_text()
    assert env["KINETIC_MQTT_PASSWORD"] not in passwd
    assert re.search(rf"^{a.pseudonym}:\$7\$101\$", passwd, re.M) and broker_users(broker["work"] / "passwd") == {
        "kinetic-processing", a.pseudonym, broker["b"].pseudonym}
    # the ACL got the per-patient rules back
    assert all(rule in (broker["work"] / "acl").read_text().splitlines() for rule in patient_acl_rules())


def test_provisioned_patient_reaches_only_its_own_topics(broker, monkeypatch):
    a, b, tls = broker["a"], broker["b"], broker["tls"]
    processing = Listener(client_as(tls, "kinetic-processing", broker["processing"]),
                          [topics.partition_filters("raw/+")[0], topics.partition_filters("session")[0]])
    client_a = collector_client(a, monkeypatch)
    for side in ("L", "R"):
        assert publish_and_settle(client_a, topics.raw_topic(a.pseudonym, side))
    assert publish_and_settle(client_a, topics.session_topic(a.pseudonym))
    intruder = collector_client(a, monkeypatch)
    publish_and_settle(intruder, topics.raw_topic(b.pseudonym, "L"))  # dropped, or the connection cut
    intruder.loop_stop()
    client_b = collector_client(b, monkeypatch)  # provisioned through the Python writer
    assert publish_and_settle(client_b, topics.raw_topic(b.pseudonym, "R"))
    deadline = time.monotonic() + 5
    expected = {topics.raw_topic(a.pseudonym, "L"), topics.raw_topic(a.pseudonym, "R"), topics.session_topic(a.pseudonym),
                topics.raw_topic(b.pseudonym, "R")}
    while time.monotonic() < deadline and set(processing.got) != expected:
        time.sleep(0.05)
    with processing.lock:
        assert sorted(processing.got) == sorted(expected)  # and not B's L topic, which only A tried
    for c in (processing.client, client_a, client_b):
        c.disconnect()
        c.loop_stop()


def test_rotation_replaces_the_password(broker, monkeypatch, tmp_path):
    b, work = broker["b"], broker["work"]
    old = read_env(b.env)["KINETIC_MQTT_PASSWORD"]
    connected_before = collector_client(b, monkeypatch)
    with pytest.raises(ProvisionError, match="exists already"):
        provision_patient(passwd=work / "passwd", out=broker["out"], broker_url=broker["url"], pseudonym=b.pseudonym)
    assert main(["provision", "patient", "--passwd", str(work / "passwd"), "--out", str(broker["out"]),
                 "--broker-url", broker["url"], "--ca-file", str(work / "certs" / "ca.crt"),
                 "--pseudonym", b.pseudonym, "--rotate"]) == 0
    new = read_env(b.env)["KINETIC_MQTT_PASSWORD"]
    assert new != old
    assert connected_before.is_connected()
    broker["proc"].send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while connected_before.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not connected_before.is_connected()  # the reload drops the session signed in with the old password
    connected_before.loop_stop()
    with pytest.raises(MqttConnectError, match="refused"):
        client_as(broker["tls"], b.pseudonym, old)
    c = collector_client(b, monkeypatch)
    assert publish_and_settle(c, topics.raw_topic(b.pseudonym, "L"))
    c.disconnect()
    c.loop_stop()


def test_pseudonyms_are_random_and_secrets_stay_out_of_repositories(tmp_path):
    made = {new_pseudonym() for _ in range(500)}
    assert len(made) == 500 and all(re.fullmatch(r"p-[0-9a-f]{12}", p) for p in made)
    assert new_pseudonym({"p-x"}) != "p-x"
    repo = Path(__file__).resolve().parents[1]
    with pytest.raises(ProvisionError, match="git work tree"):
        provision_patient(passwd=tmp_path / "passwd", out=repo / "gateways-test", broker_url="mqtts://b:8883")
    with pytest.raises(ProvisionError, match="git work tree"):
        provision_patient(passwd=repo / "passwd-test", out=tmp_path, broker_url="mqtts://b:8883")
    assert not (repo / "gateways-test").exists() and not (repo / "passwd-test").exists()
    assert not (tmp_path / "passwd").exists()


def test_shipped_acl_already_has_the_patient_rules(tmp_path, default_topic_root):
    shipped_patterns = [line.strip() for line in SHIPPED_ACL.read_text().splitlines() if line.startswith("pattern ")]
    assert shipped_patterns == list(PATIENT_ACL_RULES)
    copy = tmp_path / "acl"
    copy.write_text(SHIPPED_ACL.read_text())
    assert ensure_patient_acl(copy) is False and copy.read_text() == SHIPPED_ACL.read_text()


def test_mosquitto_hash_matches_mosquitto_passwd(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.touch()
    subprocess.run(["mosquitto_passwd", str(passwd), "someone"], input="a password 123\na password 123\n", text=True,
                   check=True, capture_output=True)
    stored = passwd.read_text().strip().split(":", 1)[1]
    salt = base64.b64decode(stored.split("$")[3])
    assert mosquitto_hash("a password 123", salt=salt) == stored


def test_therapist_account_with_a_one_time_password(tmp_path, capsys):
    db = tmp_path / "kinetic.sqlite"
    store = SQLiteStore(db)
    store.migrate()
    bundle = provision_patient(passwd=tmp_path / "passwd", out=tmp_path / "gw", broker_url="mqtts://b:8883", store=store)
    assert main(["provision", "therapist", "ada", "--display-name", "Dr Ada", "--assign", bundle.pseudonym,
                 "--db", str(db)]) == 0
    out = capsys.readouterr().out
    password = re.search(r"initial password \(shown once, hand it over privately\): (\S+)", out).group(1)
    actor = authenticate(store, "ada", password)
    assert actor is not None and actor.role == "therapist" and actor.display_name == "Dr Ada"
    assert not store.query("SELECT 1 AS x FROM therapist_patients WHERE therapist = 'ada' AND patient = ?",
                           (bundle.pseudonym,)).empty
    assert provision_therapist(store, "bea", password="chosen password!") is None
    assert authenticate(store, "bea", "chosen password!") is not None
    assert main(["provision", "therapist", "ada", "--db", str(db)]) == 1  # exists already
    assert password not in capsys.readouterr().out
    # a reset: a new random password, the old one stops working
    assert main(["provision", "therapist", "ada", "--reset", "--db", str(db)]) == 0
    new = re.search(r"initial password \(shown once, hand it over privately\): (\S+)", capsys.readouterr().out).group(1)
    assert new != password and authenticate(store, "ada", new) is not None and authenticate(store, "ada", password) is None
    assert main(["provision", "therapist", bundle.pseudonym, "--reset", "--db", str(db)]) == 1  # no such therapist
    store.close()
