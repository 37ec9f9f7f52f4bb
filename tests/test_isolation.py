"""Tenant isolation and fault containment of the processing service, through the real Mosquitto (issue 21):
a test run's own topic root, device ownership, sequence jumps, a second device in a session, one session's
failure contained to that session."""

from __future__ import annotations

import time
import urllib.request

import numpy as np
import pytest

import processing.sessions as sessions_mod
from insole_common import topics
from insole_common.codec import Batch, PressureUnit, encode_batch
from kinetic.cli import main as cli_main
from processing.service import ProcessingService
from simulator import SimulationParams, simulate
from storage.archive import RawArchive
from storage.health import MetricsServer
from storage.store import SQLiteStore
from tests.conftest import root_in_use
from tests.helpers import running_service, wait_for
from tests.test_live_strides import START_US, publish, session_message, walk_messages


@pytest.fixture(scope="module")
def walk():
    return simulate(SimulationParams(schedule=(("standing", 3.0), ("walking", 45.0))), seed=8)


def one_batch(device: str, first_seq: int, time_us: int, *, side: str = "L", n_channels: int = 16) -> bytes:
    rng = np.random.default_rng(first_seq % 1000)
    return encode_batch(Batch(device_id=device, side=side, sample_rate_hz=100.0, first_seq=first_seq, device_time_us=0,
                              collector_time_us=time_us, pressure_raw=rng.integers(0, 3000, (50, n_channels)).astype(
                                  np.uint16), layout_id=1 if n_channels == 16 else 0, pressure_unit=PressureUnit.KPA,
                              pressure_scale=0.1))


def stored_seqs(store, device: str) -> list[int]:
    rows = store.query("SELECT first_seq, n_frames FROM raw_batches WHERE device_id = ? ORDER BY first_seq", (device,))
    return [s for r in rows.itertuples() for s in range(int(r.first_seq), int(r.first_seq) + int(r.n_frames))]


def summary_of(store, session_id: str) -> tuple[int, str]:
    row = store.query("SELECT strides_n, summary_json FROM session_summaries WHERE session_id = ?", (session_id,))
    assert len(row) == 1, f"session {session_id} has no results"
    return int(row["strides_n"][0]), str(row["summary_json"][0])


# item 7 --------------------------------------------------------------------------------------------------------
def test_traffic_under_another_topic_root_never_reaches_this_runs_worker(tmp_path, mqtt_settings, patient_id) -> None:
    """Another Kinetic publisher on the same broker (here: the contract's root kc/v1) cannot change what a test's
    worker stores: the run has its own root (tests/conftest.py), and topics and subscriptions follow it."""
    store = SQLiteStore(tmp_path / "kc.sqlite")
    service = ProcessingService(store, analyze_on_close=False, live_strides=False)
    stranger = f"{patient_id}-x"
    stranger_topic = f"kc/v1/{topics.partition_of(stranger):02d}/{stranger}/raw/L"
    with running_service(service, mqtt_settings, name="test-root"):
        publish(mqtt_settings, [(stranger_topic, one_batch(f"{stranger}-L", 0, START_US)),
                                (topics.raw_topic(patient_id, "L"), one_batch(f"{patient_id}-L", 0, START_US))])
        assert wait_for(lambda: service.stats.batches_n >= 1, 10)
        time.sleep(0.5)
    devices = store.query("SELECT DISTINCT device_id FROM raw_batches")["device_id"].tolist()
    assert devices == [f"{patient_id}-L"] and service.stats.rejected_n == 0
    assert root_in_use() != "kc/v1"  # tests/conftest.py chose this run's root


# item 1 --------------------------------------------------------------------------------------------------------
def test_another_patient_cannot_displace_a_devices_frames(tmp_path, mqtt_settings, patient_id) -> None:
    """Patient A publishes, on A's own topic, batches carrying B's device id 3 s ahead of B: they are refused
    (foreign_device, counted and audited) and every one of B's frames is stored for B."""
    a, b = f"{patient_id}-a", f"{patient_id}-b"
    device = f"{b}-L"
    store = SQLiteStore(tmp_path / "kc.sqlite")
    service = ProcessingService(store, analyze_on_close=False, live_strides=False)
    t_us = lambda seq: START_US + seq * 10_000  # noqa: E731 - 100 Hz
    with running_service(service, mqtt_settings, name="test-spoof"):
        publish(mqtt_settings, [(topics.raw_topic(b, "L"), one_batch(device, 0, t_us(0)))])
        assert wait_for(lambda: service.stats.batches_n == 1, 10)
        fakes = [(topics.raw_topic(a, "L"), one_batch(device, s, t_us(s))) for s in range(350, 1350, 50)]
        publish(mqtt_settings, fakes)  # 3 s (300 frames) ahead of B
        assert wait_for(lambda: service.stats.rejected["foreign_device"] == 20, 10), service.stats.rejected
        publish(mqtt_settings, [(topics.raw_topic(b, "L"), one_batch(device, s, t_us(s))) for s in range(50, 1500, 50)])
        assert wait_for(lambda: service.stats.batches_n == 30, 10)
    assert stored_seqs(store, device) == list(range(1500))
    assert service.stats.frames_duplicate_n == 0
    owners = store.query("SELECT s.patient FROM raw_batches r JOIN sessions s ON s.session_id = r.session_id "
                         "WHERE r.device_id = ? GROUP BY s.patient", (device,))["patient"].tolist()
    assert owners == [b] and store.device_owner(device) == b
    print(f"\nspoofing: {len(stored_seqs(store, device))} of 1500 of B's frames stored, "
          f"{service.stats.frames_duplicate_n} dropped as duplicates, {service.stats.rejected['foreign_device']} of 20 "
          "fakes refused")
    audit = store.query("SELECT reason, COUNT(*) AS n FROM rejections GROUP BY reason")
    assert dict(zip(audit["reason"], audit["n"], strict=True)) == {"foreign_device": 20}


def test_a_sequence_jump_the_clock_cannot_explain_is_refused(tmp_path, mqtt_settings, patient_id, walk) -> None:
    """One well-formed batch of the patient's own insole at sequence 10**12 is refused (sequence_jump) and the
    session is analysed; and a batch ending at 2**63 is refused cleanly, not an OverflowError."""
    store = SQLiteStore(tmp_path / "kc.sqlite")
    service = ProcessingService(store, live_strides=False)
    messages = [session_message(patient_id, "start", "s-jump"), *walk_messages(walk, patient_id)]
    device = f"{patient_id}-L"
    half = len(messages) // 2
    bad = [(topics.raw_topic(patient_id, "L"), one_batch(device, 10**12, START_US + 30_000_000)),
           (topics.raw_topic(patient_id, "L"), one_batch(device, 2**63 - 50, START_US + 30_000_000))]
    with running_service(service, mqtt_settings, name="test-jump"):
        publish(mqtt_settings, [*messages[:half], *bad, *messages[half:],
                                session_message(patient_id, "stop", "s-jump", START_US + 49_000_000)])
        assert wait_for(lambda: service.stats.sessions_closed_n == 1, 30)
    assert service.stats.rejected == {"sequence_jump": 1, "implausible_value": 1}
    strides_n, summary = summary_of(store, "s-jump")
    assert strides_n > 20 and "session_too_long" not in summary
    print(f"\nsequence 10**12 and 2**63-50: refused {dict(service.stats.rejected)}; the session has {strides_n} strides")
    assert max(stored_seqs(store, device)) < 10**6


# item 2 --------------------------------------------------------------------------------------------------------
def test_a_second_device_in_a_session_is_set_apart_not_mixed_in(tmp_path, mqtt_settings, patient_id, walk) -> None:
    """A batch of a second device on the patient's own topic — at sequence 10**12, or with 8 channels — neither
    starves the session (it is analysed from the insole worn) nor stops the service; the archive keeps it apart.
    Another patient's session, closed by inactivity at the same time, is analysed as well."""
    other = f"{patient_id}-o"
    store = SQLiteStore(tmp_path / "kc.sqlite")
    service = ProcessingService(store, live_strides=False, inactivity_s=1.0, archive=RawArchive(tmp_path / "archive"))
    mine = walk_messages(walk, patient_id)
    half = len(mine) // 2
    strays = [(topics.raw_topic(patient_id, "L"), one_batch(f"{patient_id}-spare", 10**12, START_US + 20_000_000)),
              (topics.raw_topic(patient_id, "R"), one_batch(f"{patient_id}-eight", 0, START_US + 20_000_000,
                                                            side="R", n_channels=8))]
    with running_service(service, mqtt_settings, name="test-second-device"):
        publish(mqtt_settings, [session_message(patient_id, "start", "s-mixed"), *mine[:half], *strays, *mine[half:],
                                session_message(other, "start", "s-other"), *walk_messages(walk, other)])
        assert wait_for(lambda: service.stats.sessions_closed_n == 2, 40), service.stats
        publish(mqtt_settings, [(topics.raw_topic(other, "L"), one_batch(f"{other}-L", 6_000, START_US + 60_000_000))])
        assert wait_for(lambda: service.stats.batches_n == len(mine) * 2 + 3, 10)  # still serving
    strides_n, summary = summary_of(store, "s-mixed")
    assert strides_n > 20 and "extra_devices" in summary and f"{patient_id}-spare" in summary
    print(f"\nsecond device (10**12, 8 channels): s-mixed {strides_n} strides, the other patient's session "
          f"{summary_of(store, 's-other')[0]}; {service.stats.sessions_closed_n} sessions closed, service serving")
    assert summary_of(store, "s-other")[0] > 20
    files = sorted(p.name for p in (tmp_path / "archive").rglob("s-mixed_*.parquet"))
    assert files == ["s-mixed_L.1.parquet", "s-mixed_L.parquet", "s-mixed_R.1.parquet", "s-mixed_R.parquet"]


def test_a_session_that_fails_is_stored_as_failed_and_the_rest_goes_on(tmp_path, mqtt_settings, patient_id,
                                                                        walk, monkeypatch) -> None:
    """Any error while finishing one session (here injected into its analysis) is stored as that session's
    result (analysis_failed, with the error); the other patient's session closed in the same second is analysed,
    the service keeps serving, and a restart does not run the failure again."""
    sick, well = f"{patient_id}-s", f"{patient_id}-w"
    real = sessions_mod.run_analytics

    def analytics(recording):
        if any(foot.device_id.startswith(sick) for foot in recording.feet.values()):
            raise ValueError("all the input arrays must have same number of dimensions")
        return real(recording)

    monkeypatch.setattr(sessions_mod, "run_analytics", analytics)
    store = SQLiteStore(tmp_path / "kc.sqlite")
    service = ProcessingService(store, live_strides=False, inactivity_s=1.0)
    with running_service(service, mqtt_settings, name="test-contain"):
        publish(mqtt_settings, [session_message(sick, "start", "s-sick"), *walk_messages(walk, sick),
                                session_message(well, "start", "s-well"), *walk_messages(walk, well)])
        assert wait_for(lambda: service.stats.sessions_closed_n == 2, 40), service.stats
        publish(mqtt_settings, [session_message(well, "start", "s-well-2", START_US + 60_000_000)])
        assert wait_for(lambda: len(service._open) == 1, 10)  # still serving
    assert service.stats.sessions_failed_n == 1
    strides_n, summary = summary_of(store, "s-sick")
    assert strides_n == 0 and "analysis_failed" in summary and "same number of dimensions" in summary
    assert summary_of(store, "s-well")[0] > 20
    states = store.query("SELECT session_id, state FROM sessions ORDER BY session_id")
    assert dict(zip(states["session_id"], states["state"], strict=True)) == {
        "s-sick": "closed", "s-well": "closed", "s-well-2": "open"}
    restarted = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"), live_strides=False, inactivity_s=0.0)
    restarted.close_idle_sessions(time.monotonic() + 10)
    assert restarted.stats.sessions_failed_n == 0 and restarted.stats.sessions_closed_n == 1  # only s-well-2


# item 6 --------------------------------------------------------------------------------------------------------
def test_rejections_are_counted_by_reason_logged_sparingly_and_exposed(tmp_path, mqtt_settings, patient_id,
                                                                        caplog) -> None:
    """300 undecodable messages: every one counted (and audited) by reason, a handful of log lines, and the
    counters on the health endpoint in the Prometheus text format."""
    store = SQLiteStore(tmp_path / "kc.sqlite")
    service = ProcessingService(store, analyze_on_close=False, live_strides=False)
    server = MetricsServer(service.metrics, port=0)
    try:
        with running_service(service, mqtt_settings, name="test-metrics"), caplog.at_level("WARNING"):
            publish(mqtt_settings, [(topics.raw_topic(patient_id, "L"), b"junk" * 3)] * 300
                    + [(topics.raw_topic(patient_id, "L"), one_batch(f"{patient_id}-L", 0, START_US))])
            assert wait_for(lambda: service.stats.batches_n == 1, 20)
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read().decode()
    finally:
        server.close()
    assert service.stats.rejected == {"truncated": 300}
    assert len([r for r in caplog.records if "rejected message" in r.getMessage()]) <= 5
    assert 'kinetic_processing_rejected_total{reason="truncated"} 300.0' in text
    assert "kinetic_processing_frames_stored_total 50.0" in text
    assert "# TYPE kinetic_processing_inbox_depth gauge" in text



def test_a_provisioned_device_is_refused_on_another_patients_topic(tmp_path, mqtt_settings, patient_id) -> None:
    """``kinetic provision device`` records an insole for its patient before it ever sends: then even the first
    batch with its id on another patient's topic is refused, and only ``--reassign`` moves it."""
    owner, other, device = f"{patient_id}-o", f"{patient_id}-x", f"{patient_id}-dev"
    db = str(tmp_path / "kc.sqlite")
    assert cli_main(["provision", "device", device, "--pseudonym", owner, "--side", "L", "--db", db]) == 0
    assert cli_main(["provision", "device", device, "--pseudonym", other, "--side", "L", "--db", db]) == 1
    store = SQLiteStore(db)
    service = ProcessingService(store, analyze_on_close=False, live_strides=False)
    with running_service(service, mqtt_settings, name="test-provisioned"):
        publish(mqtt_settings, [(topics.raw_topic(other, "L"), one_batch(device, 0, START_US)),
                                (topics.raw_topic(owner, "L"), one_batch(device, 0, START_US))])
        assert wait_for(lambda: service.stats.messages_n == 2, 10)
    assert service.stats.rejected == {"foreign_device": 1} and stored_seqs(store, device) == list(range(50))
    assert cli_main(["provision", "device", device, "--pseudonym", other, "--side", "R", "--db", db, "--reassign"]) == 0
    assert store.device_owner(device) == other
