"""The processing service's compensation flags: stored with their evidence, idempotent, therapist
reference periods respected, and published on the alerts topic through the real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import numpy as np
import pytest

from insole_common import topics
from insole_common.messages import FlagMessage, parse_message
from transport.mqtt import connect, make_client
from storage.store import SQLiteStore
from processing.flags import update_flags
from tests.helpers import wait_for


def fill_days(store, patient: str, n_days: int, *, shift_from_day: int | None, shift_fw: float = 0.06) -> list[str]:
    """Daily summaries with realistic day-to-day noise and, optionally, a lateral COP shift."""
    rng = np.random.default_rng(4)
    days = [f"2026-10-{d:02d}" for d in range(1, n_days + 1)]
    store.open_session("s0", patient, 0, {})
    for k, day in enumerate(days):
        shift = shift_fw if shift_from_day is not None and k >= shift_from_day else 0.0
        metrics = {"stride_length_m": 1.3 + rng.normal(0, 0.02), "cadence_steps_per_min": 108 + rng.normal(0, 1.5),
                   "stride_time_s": 1.11 + rng.normal(0, 0.01)}
        for side in "LR":
            metrics[f"cop_ml_mean_fw_{side}"] = 0.02 + shift + rng.normal(0, 0.008)
            metrics[f"heel_load_fraction_{side}"] = 0.19 + rng.normal(0, 0.005)
            metrics[f"stance_time_s_{side}"] = 0.68 + rng.normal(0, 0.006)
            metrics[f"stride_length_m_{side}"] = metrics["stride_length_m"]
        store.save_daily_summary(patient, day, 1, 80, metrics)
    return days


def test_flags_stored_with_evidence_and_idempotent(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "kc.sqlite")
    store.migrate()
    days = fill_days(store, "p-shift", 24, shift_from_day=14)
    events = update_flags(store, "p-shift", now_us=1)
    raised = [e for e in events if e.state == "raised"]
    assert {e.kind for e in raised} == {"lateral_shift"} and {e.metric for e in raised} == {"cop_ml_mean_fw_L", "cop_ml_mean_fw_R"}
    assert all(days[14] <= str(e.day) <= days[20] for e in raised)  # within a week of the onset
    rows = store.query("SELECT kind, state, baseline, current, threshold, effect_size, days_n, evidence_json FROM flags")
    assert len(rows) == len(events)
    first = rows.iloc[0]
    assert first.current - first.baseline > first.threshold > 0 and first.effect_size > 2
    assert json.loads(first.evidence_json)["direction"] == "up"
    baselines = store.query("SELECT metric, source, days_n FROM baselines WHERE patient = 'p-shift'")
    assert set(baselines["source"]) == {"auto"} and "cop_ml_mean_fw_L" in set(baselines["metric"])
    # running again over the same days changes nothing and announces nothing new
    assert update_flags(store, "p-shift", now_us=2) == []
    again = store.query("SELECT kind, metric, state, day, baseline, current, created_us FROM flags")
    assert len(again) == len(rows) and set(again["created_us"]) == {1}  # the original events, not new ones


def test_stable_patient_gets_no_flags_and_therapist_reference_is_used(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "kc.sqlite")
    store.migrate()
    fill_days(store, "p-stable", 24, shift_from_day=None)
    assert update_flags(store, "p-stable", now_us=1) == []
    # a therapist sets the reference period to the last days: the baseline source follows
    store.execute("INSERT INTO baselines (patient, metric, start_day, end_day, mean, sd, days_n, source, set_by, updated_us) "
                  "VALUES ('p-stable', 'reference_period', '2026-10-10', '2026-10-20', 0, 0, 0, 'therapist', 'ther-1', 5)")
    update_flags(store, "p-stable", now_us=6)
    cop = store.query("SELECT source, start_day, end_day, set_by FROM baselines WHERE metric = 'cop_ml_mean_fw_L'").iloc[0]
    assert (cop.source, cop.start_day, cop.end_day, cop.set_by) == ("therapist", "2026-10-10", "2026-10-20", "ther-1")


@pytest.mark.services
def test_demo_flags_the_compensating_patients_and_publishes_alerts(tmp_path, mqtt_settings) -> None:
    """16 days of the demo through the real broker: flags for the lateral and the shortening patient only."""
    tag = uuid.uuid4().hex[:6]
    got: list[FlagMessage] = []
    listener = make_client(mqtt_settings)
    listener.on_message = lambda _c, _u, m: got.append(parse_message(m.payload)) if m.topic.endswith(f"-{tag}/flags") else None
    connect(listener, mqtt_settings)
    listener.subscribe(topics.partition_filters("flags")[0], qos=1)
    args = [sys.executable, "-m", "kinetic", "demo", "--days", "16", "--walk-s", "30", "--out", str(tmp_path / "d"),
            "--tag", tag]
    done = subprocess.run(args, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    assert wait_for(lambda: len(got) >= 2, 10)
    listener.disconnect()
    listener.loop_stop()
    flags = SQLiteStore(tmp_path / "d" / "kinetic.sqlite").query("SELECT patient, kind, state FROM flags")
    raised = flags[flags["state"] == "raised"]
    assert set(raised["patient"]) == {f"demo-lateral-{tag}", f"demo-short-{tag}"}
    assert set(raised.loc[raised["patient"] == f"demo-lateral-{tag}", "kind"]) == {"lateral_shift"}
    assert set(raised.loc[raised["patient"] == f"demo-short-{tag}", "kind"]) == {"shortened_stride"}
    published = {(m.patient, m.kind, m.state) for m in got}
    assert published == {(r.patient, r.kind, r.state) for r in flags.itertuples()}
