"""The processing service's compensation flags: stored with their evidence, idempotent, therapist
reference periods respected, and published on the alerts topic through the real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import date, timedelta

import numpy as np
import pytest

from insole_common import topics
from insole_common.errors import ValidationError
from insole_common.messages import FlagMessage, parse_message
from processing.detection import DetectionSettings
from processing.flags import update_flags
from processing.service import ProcessingService
from storage import flags as flag_store
from storage.store import SQLiteStore
from tests.helpers import wait_for
from transport.mqtt import connect, make_client


def fill_days(store, patient: str, n_days: int, *, shift_from_day: int | None, shift_fw: float = 0.06,
              shift_until_day: int | None = None) -> list[str]:
    """Daily summaries with realistic day-to-day noise and, optionally, a lateral COP shift (from
    ``shift_from_day``, until ``shift_until_day`` exclusive when given)."""
    rng = np.random.default_rng(4)
    start = date(2026, 10, 1)
    days = [(start + timedelta(days=d)).isoformat() for d in range(n_days)]
    store.open_session("s0", patient, 0, {})
    for k, day in enumerate(days):
        shifted = shift_from_day is not None and shift_from_day <= k < (shift_until_day or n_days)
        shift = shift_fw if shifted else 0.0
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
    events = update_flags(store, "p-shift", now_us=1, settings=DetectionSettings())
    raised = [e for e in events if e.state == "raised"]
    assert {e.kind for e in raised} == {"lateral_shift"}
    assert {e.metric for e in raised} == {"cop_ml_mean_fw_L", "cop_ml_mean_fw_R"}
    assert all(days[14] <= str(e.day) <= days[20] for e in raised)  # within a week of the onset
    rows = store.query("SELECT kind, state, baseline, current, threshold, effect_size, days_n, evidence_json FROM flags")
    assert len(rows) == len(events)
    first = rows.iloc[0]
    assert first.current - first.baseline > first.threshold > 0 and first.effect_size > 2
    assert json.loads(first.evidence_json)["direction"] == "up"
    baselines = store.query("SELECT metric, source, days_n FROM baselines WHERE patient = 'p-shift'")
    assert set(baselines["source"]) == {"auto"} and "cop_ml_mean_fw_L" in set(baselines["metric"])
    # running again over the same days changes nothing and announces nothing new
    assert update_flags(store, "p-shift", now_us=2, settings=DetectionSettings()) == []
    again = store.query("SELECT kind, metric, state, day, baseline, current, created_us FROM flags")
    assert len(again) == len(rows) and set(again["created_us"]) == {1}  # the original events, not new ones


def test_stable_patient_gets_no_flags_and_therapist_reference_is_used(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "kc.sqlite")
    store.migrate()
    fill_days(store, "p-stable", 24, shift_from_day=None)
    assert update_flags(store, "p-stable", now_us=1, settings=DetectionSettings()) == []
    # a therapist sets the reference period to the last days: the baseline source follows
    store.execute("INSERT INTO baselines (patient, metric, start_day, end_day, mean, sd, days_n, source, set_by, updated_us) "
                  "VALUES ('p-stable', 'reference_period', '2026-10-10', '2026-10-20', 0, 0, 0, 'therapist', 'ther-1', 5)")
    update_flags(store, "p-stable", now_us=6, settings=DetectionSettings())
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
    done = subprocess.run(args, capture_output=True, text=True, timeout=400, check=False)
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


def test_a_flag_never_cleared_stays_active_and_a_cleared_one_does_not(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "kc.sqlite")
    store.migrate()
    days = fill_days(store, "p-open", 40, shift_from_day=14)
    update_flags(store, "p-open", now_us=1, settings=DetectionSettings())
    raised = [f for f in flag_store.flags(store, "p-open") if f["state"] == "raised"]
    assert len(raised) == 2 and len({f["day"] for f in raised}) == 1
    d = raised[0]["day"]
    # raised on day D, never cleared, and the data go on past D + 21: still active, listed with its since-day
    assert days.index(d) + 21 <= len(days) - 1
    assert all(f["active"] and f["since_day"] == d and f["cleared_day"] is None for f in raised)
    active = flag_store.active_flags(store, ["p-open"])
    assert [(a["patient"], a["kind"], a["metric"], a["side"], a["direction"], a["since_day"]) for a in active] == [
        ("p-open", "lateral_shift", "cop_ml_mean_fw_L", "L", "up", d),
        ("p-open", "lateral_shift", "cop_ml_mean_fw_R", "R", "up", d)]
    assert all(a["current"] - a["baseline"] > a["threshold"] > 0 for a in active)
    assert active[0]["threshold"] == flag_store.baselines(store, "p-open")["cop_ml_mean_fw_L"]["threshold"]

    # the same shift ending after ten days: improved, then cleared; a cleared flag is not active
    fill_days(store, "p-back", 50, shift_from_day=14, shift_until_day=24)
    update_flags(store, "p-back", now_us=1, settings=DetectionSettings())
    events = flag_store.flags(store, "p-back")
    assert sorted(f["state"] for f in events) == ["cleared"] * 2 + ["improved"] * 2 + ["raised"] * 2
    cleared_day = next(f["day"] for f in events if f["state"] == "cleared")
    assert all(not f["active"] and f["cleared_day"] == cleared_day for f in events if f["state"] == "raised")
    assert flag_store.active_flags(store, ["p-back"]) == []
    assert [a["patient"] for a in flag_store.active_flags(store)] == ["p-open", "p-open"]
    assert flag_store.active_flags(store, []) == []


def test_baselines_store_the_detectors_band_and_settings(tmp_path, monkeypatch) -> None:
    store = SQLiteStore(tmp_path / "kc.sqlite")
    store.migrate()
    fill_days(store, "p-set", 24, shift_from_day=None)
    config = tmp_path / "detection.toml"
    config.write_text("[detection]\nz_real_change = 2.5\n")
    monkeypatch.setenv("KINETIC_DETECTION_CONFIG", str(config))
    service = ProcessingService(store, live_strides=False)  # reads the deployment's settings once, here
    assert service.detection_settings.z_real_change == 2.5
    update_flags(store, "p-set", now_us=1, settings=service.detection_settings)
    base = flag_store.baselines(store, "p-set")["cop_ml_mean_fw_L"]
    assert set(base) == {"start_day", "end_day", "mean", "sd", "days_n", "source", "set_by", "threshold", "band_low",
                         "band_high", "settings"}
    assert base["settings"]["z_real_change"] == 2.5 and base["source"] == "auto"
    assert base["threshold"] == pytest.approx(2.5 * base["sd"] * (1 + 1 / base["days_n"]) ** 0.5)
    assert (base["band_low"], base["band_high"]) == pytest.approx((base["mean"] - base["threshold"],
                                                                  base["mean"] + base["threshold"]))
    # settings given to the service win over the deployment's file
    assert ProcessingService(store, live_strides=False, detection_settings=DetectionSettings()).detection_settings \
        == DetectionSettings()
    update_flags(store, "p-set", now_us=2, settings=DetectionSettings())
    assert flag_store.baselines(store, "p-set")["cop_ml_mean_fw_L"]["settings"]["z_real_change"] == 1.96
    assert flag_store.reference_period(store, "p-set") is None


def test_a_bad_detection_config_stops_the_service_at_start(tmp_path, monkeypatch) -> None:
    """A wrong KINETIC_DETECTION_CONFIG fails when the service is made (naming the key), not at a session's close."""
    store = SQLiteStore(tmp_path / "kc.sqlite")
    config = tmp_path / "detection.toml"
    config.write_text("[detection]\ncusum_hh = 5.0\n")
    monkeypatch.setenv("KINETIC_DETECTION_CONFIG", str(config))
    with pytest.raises(ValidationError, match="cusum_hh") as err:
        ProcessingService(store, live_strides=False)
    assert err.value.reason == "bad_detection_config"
    monkeypatch.setenv("KINETIC_DETECTION_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ValidationError, match=r"cannot read .*missing\.toml"):
        ProcessingService(store, live_strides=False)
