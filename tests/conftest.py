"""Shared fixtures: the real Mosquitto and PostgreSQL, found through environment variables.

``KINETIC_MQTT_URL`` (default ``mqtt://127.0.0.1:1883``) and ``KINETIC_TEST_PG_DSN``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``) are the ones the
README and ``.ci/run`` use. A service that is down makes its tests *fail*, never
skip: ``make test`` / ``.ci/run`` start them first.

Each test run publishes and subscribes under its own topic root (``KINETIC_TOPIC_ROOT``, set here before any
test runs and inherited by the ``kinetic`` processes tests start), so other Kinetic traffic on the same broker
(another run, a demo, a deployment on ``kc/v1``) cannot reach a test's workers, and a test's messages reach
nobody else's. A run may choose the root by setting the variable itself.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from insole_common import topics
from transport.mqtt import MqttSettings, broker_reachable

#: this run's topic root (insole_common.topics.root reads it)
os.environ.setdefault("KINETIC_TOPIC_ROOT", f"kc-test-{uuid.uuid4().hex[:10]}/v1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PG_DSN = os.environ.get("KINETIC_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=5)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "not found"


def pytest_report_header(config) -> list[str]:
    mqtt = MqttSettings.from_env()
    return [
        (f"mosquitto: {_version(['mosquitto', '-h'])} at {mqtt.url} "
         f"({'reachable' if broker_reachable(mqtt) else 'NOT REACHABLE'})"),
        f"postgresql: {_version(['psql', '--version'])} dsn {PG_DSN}",
        f"topic root: {os.environ['KINETIC_TOPIC_ROOT']}",
        f"shared data: {SHARED_DATA} ({'present' if SHARED_DATA.is_dir() else 'MISSING'})",
    ]


@pytest.fixture(scope="session")
def mqtt_settings() -> MqttSettings:
    settings = MqttSettings.from_env()
    if not broker_reachable(settings):
        pytest.fail(f"the MQTT broker at {settings.url} is not reachable; start it (make test does) — not skipping")
    return settings


@pytest.fixture
def patient_id() -> str:
    """A pseudonym unique to this test, so its topics are its own."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: the real recordings must sit beside the repository")
    return SHARED_DATA


@pytest.fixture
def default_topic_root(monkeypatch) -> None:
    """The contract's own root ``kc/v1`` for one test (tests of the wire contract itself)."""
    monkeypatch.delenv("KINETIC_TOPIC_ROOT", raising=False)


def root_in_use() -> str:
    """The topic root the topic functions use now (read from a topic they build)."""
    return topics.raw_topic("p", "L").rsplit("/", 4)[0]
