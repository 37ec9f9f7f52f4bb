"""End to end through the real Mosquitto: simulated insoles -> collector -> MQTT -> processing -> SQLite.

Every sample the simulated insoles sent arrives exactly once (by device and sequence number,
with its exact value), the clocks of two drifting insoles are aligned, and per-session
summaries and strides exist and agree with the simulator's ground truth.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from collector.service import Collector, CollectorConfig
from insole_common import topics
from insole_common.messages import parse_message
from processing.service import ProcessingService
from simulator import SimulationParams, simulate
from simulator.source import SimulatedInsoleSource
from storage.patients import stored_frames_n
from storage.store import SQLiteStore
from tests.helpers import running_service, wait_for
from transport.mqtt import connect, make_client

pytestmark = pytest.mark.services
START_US = 1_795_000_000_000_000


@pytest.fixture(scope="module")
def walk():
    params = SimulationParams(
        schedule=(("standing", 5.0), ("walking", 40.0), ("turning", 4.0), ("walking", 30.0), ("sitting", 8.0)),
        packet_loss_fraction=0.02, clock_drift_ppm=60.0, clock_offset_s=3.0, imu=True,
    )
    return simulate(params, seed=11)


def test_simulated_insoles_end_to_end(tmp_path, mqtt_settings, patient_id, walk) -> None:
    store = SQLiteStore(tmp_path / "kinetic.sqlite")
    service = ProcessingService(store)
    # paced at 10x the true rate: a running session, not a burst that a stop overtakes before the live analysis has
    # announced anything (provisional strides still held back when their session closes are replaced, not sent)
    sources = [SimulatedInsoleSource(walk, side, device_id=f"{patient_id}-{side}", start_time_us=START_US, seed=3,
                                     speedup=10.0) for side in ("L", "R")]
    collector = Collector(CollectorConfig(patient=patient_id, outbox_path=tmp_path / "outbox.sqlite"), sources,
                          mqtt_settings, clock_us=lambda: START_US)
    live = []
    listener = make_client(mqtt_settings)
    listener.on_message = lambda _c, _u, m: live.append(parse_message(m.payload))
    connect(listener, mqtt_settings)
    listener.subscribe(topics.strides_topic(patient_id), qos=1)
    time.sleep(0.3)
    with running_service(service, mqtt_settings, name="test-e2e"):
        asyncio.run(collector.run(session_id="e2e-session"))
        assert wait_for(lambda: service.stats.sessions_closed_n == 1, 60)
    listener.disconnect()
    listener.loop_stop()

    # 1. every delivered sample exactly once, nothing invented, values exact
    for side in ("L", "R"):
        delivered = np.flatnonzero(walk.truth.delivered[side])
        rows = store.query("SELECT first_seq, n_frames FROM raw_batches WHERE device_id = ? ORDER BY first_seq",
                           (f"{patient_id}-{side}",))
        stored = np.concatenate([np.arange(r.first_seq, r.first_seq + r.n_frames) for r in rows.itertuples()])
        np.testing.assert_array_equal(stored, delivered)
        batches = [b for b in store.session_batches("e2e-session") if b.side == side]
        values = np.concatenate([b.pressure for b in batches])
        np.testing.assert_allclose(values, walk.recording.feet[side].pressure[delivered], atol=1e-4)
    assert walk.truth.delivered["L"].mean() < 0.995  # packet loss really happened
    assert service.stats.rejected_n == 0 and service.stats.frames_duplicate_n == 0

    # 2. the two insoles' clocks (right one offset by 3 s and drifting 60 ppm) land on one time base
    first = {b.side: b for b in sorted(store.session_batches("e2e-session"), key=lambda b: b.first_seq)}
    for side, b in first.items():
        true_t_us = START_US + walk.recording.feet[side].t0_s * 1e6 + b.first_seq / b.sample_rate_hz * 1e6
        assert abs(b.collector_time_us - true_t_us) < 10_000 + 40_000  # latency floor..ceiling of the source

    # 3. a per-session summary and strides that agree with the ground truth
    summary = store.query("SELECT strides_n, summary_json FROM session_summaries WHERE session_id = ?", ("e2e-session",))
    assert len(summary) == 1
    truth = walk.truth.events
    truth_walk = truth[(truth["activity"] == "walking") & ~truth["terminal"]]
    got = json.loads(summary["summary_json"][0])
    assert summary["strides_n"][0] >= 0.8 * len(truth_walk)
    assert got["mean_stride_time_s"] == pytest.approx(truth_walk["stride_time_s"].mean(), rel=0.03)
    assert got["mean_stride_length_m"] == pytest.approx(truth_walk["stride_length_m"].mean(), rel=0.05)
    # 4. provisional strides were published live, on the collector time base, matching the final ones
    live_hs = np.array(sorted(st.heel_strike_s for msg in live for st in msg.strides))
    final = store.query("SELECT heel_strike_s FROM strides WHERE session_id = ?", ("e2e-session",))
    final_hs = np.sort(final["heel_strike_s"].to_numpy() + json.loads(summary["summary_json"][0])["session_start_us"] / 1e6)
    print(f"live strides {len(live_hs)} of {len(final_hs)} final; ", end="")
    assert len(live_hs) >= 0.7 * len(final_hs)
    nearest_ms = np.array([np.min(np.abs(final_hs - t)) for t in live_hs]) * 1000
    print(f"median |live - final| heel strike {np.median(nearest_ms):.2f} ms, max {np.max(nearest_ms):.1f} ms")
    assert np.median(nearest_ms) < 20, np.median(nearest_ms)
    daily = store.query("SELECT strides_n FROM daily_summaries")
    assert len(daily) == 1 and daily["strides_n"][0] == summary["strides_n"][0]


@pytest.mark.parametrize("broker", ["configured", "embedded"])
def test_demo_command_runs(tmp_path, mqtt_settings, broker) -> None:
    """The README's demo command, shortened: with the configured broker and with the embedded one."""
    args = [sys.executable, "-m", "kinetic", "demo", "--days", "2", "--walk-s", "20", "--out", str(tmp_path / "demo"),
            "--tag", uuid.uuid4().hex[:6]]
    if broker == "embedded":
        args.append("--embedded-broker")
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every frame the simulated insoles sent was stored exactly once" in done.stdout
    assert ("embedded broker (amqtt)" in done.stdout) == (broker == "embedded")
    assert (tmp_path / "demo" / "kinetic.sqlite").is_file()
    store = SQLiteStore(tmp_path / "demo" / "kinetic.sqlite")
    assert len(store.query("SELECT * FROM daily_summaries")) == 2 * 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_dashboard_as_printed(command: str, cwd, env: dict, port: int, password: str, patient_pages: list[str]) -> None:
    """Start the printed dashboard command, sign in as the demo's therapist, open each flagged patient's page."""
    proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _answers(base + "/healthz"), 60), "the printed dashboard command did not serve"
        with httpx.Client(base_url=base, timeout=10) as c:
            token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text).group(1)
            c.post("/login", data={"username": "demo-therapist", "password": password, "csrf_token": token})
            for url in patient_pages:
                assert url.startswith(base)
                assert c.get(url).status_code == 200, url
                patient = url.rsplit("/", 1)[1]
                assert c.get(f"/api/patients/{patient}/flags").status_code == 200
            flagged = c.get("/api/therapist/patients").json()
            assert flagged, "the demo's therapist sees no patients"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the process group this test started (bash and the dashboard)
        proc.wait(20)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_demo_keeps_samples_reports_its_flags_and_prints_commands_that_run(tmp_path, mqtt_settings) -> None:
    """Issue 20: the demo kept no raw archive (every export of it had 0 samples), never said which flags it raised,
    and its hint `kinetic simulate ... && kinetic analyze ...` failed as printed (`kinetic` not on PATH). Now each
    `$` line it prints is run here, as printed, from another folder, with a PATH that has no `kinetic`."""
    port, tag = _free_port(), uuid.uuid4().hex[:6]
    done = subprocess.run([sys.executable, "-m", "kinetic", "demo", "--days", "21", "--walk-s", "20", "--out",
                           str(tmp_path / "demo"), "--tag", tag, "--dashboard-port", str(port)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    # the flags: which, for whom, and where to see them
    flags = out.split("Flags raised", 1)[1].split("Where to look", 1)[0]
    # lateral shift is watched on the lateral-forefoot share, else the COP, else the lateral load (docs/detection.md)
    lateral_series = "(Lateral-forefoot impulse|Medial-lateral COP|Lateral load)"
    assert re.search(rf"demo-lateral-{tag}\s+lateral shift\s+{lateral_series} \((left|right) foot\) since \d{{4}}-", flags)
    assert re.search(rf"demo-short-{tag}\s+shortened stride\s+Stride length", flags)
    assert f"no flag for demo-steady-{tag}" in flags
    pages = re.findall(rf"http://127\.0\.0\.1:{port}/therapist/patients/[\w-]+", flags)
    assert sorted(p.rsplit("/", 1)[1] for p in pages) == [f"demo-lateral-{tag}", f"demo-short-{tag}"]
    password = re.search(r"as demo-therapist with the password (\S+)", out).group(1)
    commands = [line.split("$ ", 1)[1] for line in out.splitlines() if line.lstrip().startswith("$ ")]
    assert len(commands) == 3 and not any(re.search(r"(^|[\s&;])kinetic ", c) for c in commands)  # no bare `kinetic`
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    dashboard, export, walk = commands
    _run_dashboard_as_printed(dashboard, elsewhere, env, port, password, pages)
    for command in (export, walk):
        run = subprocess.run(["bash", "-c", command], cwd=elsewhere, env=env, capture_output=True, text=True,
                             timeout=600, check=False)
        assert run.returncode == 0, (command, run.stderr[-2000:])
    # the export holds the samples the demo streamed: every session, both insoles, complete BIDS-Motion
    manifest = json.loads((tmp_path / "demo" / "export-bids" / "manifest.json").read_text())
    frames = stored_frames_n(SQLiteStore(tmp_path / "demo" / "kinetic.sqlite"),
                             [f"demo-{story}-{tag}" for story in ("steady", "lateral", "short")])
    assert manifest["sessions_n"] == 63 and manifest["samples_n"] == frames > 0  # the broker may carry others' too
    assert len(list((tmp_path / "demo" / "export-bids").glob("sub-*/ses-*/motion/*_motion.tsv"))) == 2 * 63
    assert (tmp_path / "demo" / "walk-analysis" / "summary.json").is_file()
    assert sorted(p.name for p in elsewhere.iterdir()) == []  # nothing written where the commands ran
