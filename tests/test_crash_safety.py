"""The processing service killed with SIGKILL mid-session and restarted: after redelivery, the
stored raw frames, strides and summaries equal those of an uninterrupted run.

The victim is a real ``kinetic process`` subprocess with a persistent MQTT session; the
reference is a second service that receives the very same messages without interruption.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from collector.service import Collector, CollectorConfig
from processing.service import ProcessingService
from simulator import SimulationParams, simulate
from simulator.source import SimulatedInsoleSource
from storage.store import SQLiteStore, split_raw_rows
from tests.helpers import running_service, wait_for
from transport.mqtt import purge_session

pytestmark = pytest.mark.services
START_US = 1_796_000_000_000_000


class PacedSource(SimulatedInsoleSource):
    """Slows the simulated insole down so that the kill lands mid-session."""

    async def frames(self):
        async for f in super().frames():
            await asyncio.sleep(0.003)
            yield f


def start_victim(db, archive, client_id, mqtt_settings) -> subprocess.Popen:
    env = dict(os.environ, KINETIC_MQTT_URL=mqtt_settings.url, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kinetic", "process", "--db", str(db), "--archive", str(archive), "--client-id", client_id],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("ready:"):
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"kinetic process did not become ready: {proc.stdout.read()}")


def snapshot(db, patient: str) -> dict:
    """Everything stored for ``patient`` (the services also see other clients' traffic on a shared broker)."""
    store = SQLiteStore(db)
    p = (patient,)
    out = {
        "raw": split_raw_rows(store.query(  # (one row per batch: how batches group into rows depends on timing)
            "SELECT r.device_id, r.first_seq, r.n_frames, r.payload FROM raw_batches r JOIN sessions s "
            "ON r.session_id = s.session_id WHERE s.patient = ? ORDER BY r.device_id, r.first_seq", p))
        .to_dict("records"),
        "strides": store.query("SELECT session_id, side, heel_strike_s, metrics_json FROM strides WHERE patient = ? "
                               "ORDER BY side, heel_strike_s", p).to_dict("records"),
        "sessions": store.query("SELECT session_id, start_us, end_us, state FROM sessions WHERE patient = ?", p)
        .to_dict("records"),
        "summary": [json.loads(s) for s in store.query(
            "SELECT summary_json FROM session_summaries WHERE patient = ?", p)["summary_json"]],
        "daily": store.query("SELECT patient, day, sessions_n, strides_n, metrics_json FROM daily_summaries "
                             "WHERE patient = ?", p).to_dict("records"),
    }
    store.close()
    return out


def test_sigkill_mid_session_then_restart_gives_identical_results(tmp_path, mqtt_settings, patient_id) -> None:
    sim = simulate(SimulationParams(schedule=(("standing", 3.0), ("walking", 60.0)), imu=True), seed=5)
    # the uninterrupted reference
    reference = ProcessingService(SQLiteStore(tmp_path / "ref.sqlite"))
    with running_service(reference, mqtt_settings, name="test-ref"):
        killed = run_and_kill(tmp_path, mqtt_settings, patient_id, sim, reference)
    total = _raw_count(tmp_path / "ref.sqlite", patient_id)
    print(f"victim killed after {killed['at_batches']} of {total} batches")
    assert 20 <= killed["at_batches"] < total, (killed["at_batches"], total)  # it really died mid-session
    got, want = snapshot(tmp_path / "victim.sqlite", patient_id), snapshot(tmp_path / "ref.sqlite", patient_id)
    assert got["raw"] == want["raw"]
    assert len(want["strides"]) > 40 and got["strides"] == want["strides"]
    assert got["summary"] == want["summary"]
    assert got["daily"] == want["daily"]
    assert got["sessions"] == want["sessions"]


def run_and_kill(tmp_path, mqtt_settings, patient_id, sim, reference):
    """Stream a session; SIGKILL the victim service once it stored part of it, restart it; wait for both."""
    victim_id = f"test-victim-{uuid.uuid4().hex[:6]}"
    victim_db = tmp_path / "victim.sqlite"
    victim = start_victim(victim_db, tmp_path / "archive", victim_id, mqtt_settings)
    killed = {}

    def killer() -> None:
        # kill once the victim has stored part of the session, then restart it
        if wait_for(lambda: victim_db.exists() and _raw_count(victim_db, patient_id) >= 20, 30):
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            killed["at_batches"] = _raw_count(victim_db, patient_id)
            time.sleep(1.0)  # messages published meanwhile queue at the broker for the persistent session
            killed["restarted"] = start_victim(victim_db, tmp_path / "archive", victim_id, mqtt_settings)

    k = threading.Thread(target=killer)
    k.start()
    sources = [PacedSource(sim, side, device_id=f"{patient_id}-{side}", start_time_us=START_US, seed=1) for side in "LR"]
    collector = Collector(CollectorConfig(patient=patient_id, outbox_path=tmp_path / "outbox.sqlite"), sources,
                          mqtt_settings, clock_us=lambda: START_US)
    try:
        asyncio.run(collector.run(session_id="crash-session"))
        k.join(60)
        assert "restarted" in killed, "the victim was never killed mid-session"
        assert wait_for(lambda: reference.stats.sessions_closed_n == 1, 60)
        assert wait_for(lambda: _closed(victim_db, patient_id), 60)
        time.sleep(0.5)  # let the restarted victim finish writing the session's results
    finally:
        for proc in (victim, killed.get("restarted")):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
        purge_session(mqtt_settings, victim_id)
    return killed


def _raw_count(db, patient: str) -> int:
    s = SQLiteStore(db)
    try:
        return len(split_raw_rows(s.query("SELECT payload FROM raw_batches WHERE device_id LIKE ?", (patient + "-%",))))
    except Exception:  # noqa: BLE001 - schema not created yet
        return 0
    finally:
        s.close()


def _closed(db, patient: str) -> bool:
    s = SQLiteStore(db)
    try:
        return not s.query("SELECT 1 AS x FROM session_summaries WHERE patient = ?", (patient,)).empty
    except Exception:  # noqa: BLE001
        return False
    finally:
        s.close()
