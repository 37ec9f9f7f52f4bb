"""Fixture data for tests, screenshots and the benchmark, written through the Store interface.

:func:`build_fixture` fills a store with three patients, accounts for every role,
weeks of sessions with per-stride rows (daily summaries computed by the processing
service's own :func:`processing.service.update_daily_summary`), baselines, flags and
notes. Sessions on the last day can carry real raw frames: a simulated walk
(:mod:`simulator`) cut into device blocks, stored with :meth:`Store.add_raw_batch` and
analysed by :meth:`ProcessingService.finish_session`, exactly as the service does.

Flags and baselines are written straight into their tables (the detector is not
integrated yet).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd

from dashboards.auth import add_account, assign_patient
from dashboards.schema import migrate, set_cohort
from processing.analytics import consts as C
from processing.store import Store

#: every fixture account's password (tests only)
FIXTURE_PASSWORD = "correct horse battery"

#: (username, role, display name, patient)
FIXTURE_ACCOUNTS = (
    ("ther-1", "therapist", "Dr Ada Therapist", None),
    ("ther-2", "therapist", "Dr Bo Therapist", None),
    ("patient-a", "patient", "Alex", "pat-a"),
    ("patient-c", "patient", "Cam", "pat-c"),
    ("res-1", "researcher", "Rae Researcher", None),
    ("admin-1", "admin", "Admin", None),
)
#: therapist -> patients
FIXTURE_ASSIGNMENTS = {"ther-1": ("pat-a", "pat-b"), "ther-2": ("pat-c",)}
FIXTURE_COHORTS = {"pat-a": "heel-pain-2026", "pat-b": "heel-pain-2026", "pat-c": "control"}


@dataclass(frozen=True)
class PatientStory:
    pseudonym: str
    lateral_shift: float = 0.0
    stride_factor: float = 1.0
    cadence_factor: float = 1.0
    heel_offload: float = 0.0
    stance_asym: float = 0.0


STORIES = (
    PatientStory("pat-a", lateral_shift=0.07, heel_offload=0.05, stance_asym=0.05),
    PatientStory("pat-b", stride_factor=0.88, cadence_factor=1.05),
    PatientStory("pat-c"),
)


def _us(day: date, hour: int) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc).timestamp() * 1_000_000)


def synthetic_strides(story: PatientStory, progress: float, n: int, rng: np.random.Generator, start_s: float = 3.0) -> pd.DataFrame:
    """``n`` strides per side of one walk; ``progress`` 0..1 moves the story's change from none to full."""
    rows = []
    # day-to-day variation (a walk's medians differ from day to day, not only its strides)
    day_t, day_len, day_lat, day_heel, day_st = rng.normal(0, [0.012, 0.02, 0.006, 0.005, 0.006])
    for side in ("L", "R"):
        stride_t = 1.11 / story.cadence_factor ** progress * (1 + day_t + 0.02 * rng.standard_normal(n))
        asym = (story.stance_asym * progress + day_st) * (-1 if side == "R" else 1) / 2
        stance_pct = 61.0 * (1 + asym) + 0.8 * rng.standard_normal(n)
        hs = start_s + np.cumsum(stride_t) - stride_t[0] + (0.55 if side == "R" else 0.0)
        length = 1.32 * (1 + (story.stride_factor - 1) * progress + day_len) * (1 + 0.03 * rng.standard_normal(n))
        lateral = 0.52 + story.lateral_shift * progress + day_lat + 0.01 * rng.standard_normal(n)
        heel = 0.19 - story.heel_offload * progress + day_heel + 0.008 * rng.standard_normal(n)
        stance = stride_t * stance_pct / 100
        rows.append(pd.DataFrame({
            C.SIDE: side, C.HEEL_STRIKE_S: hs, C.TOE_OFF_S: hs + stance, C.NEXT_HEEL_STRIKE_S: hs + stride_t,
            C.STRIDE_TIME_S: stride_t, C.STANCE_TIME_S: stance, C.SWING_TIME_S: stride_t - stance, C.STANCE_PCT: stance_pct,
            C.CADENCE_STEPS_PER_MIN: 120.0 / stride_t, C.DOUBLE_SUPPORT_S: np.nan, C.DOUBLE_SUPPORT_PCT: np.nan,
            C.STRIDE_LENGTH_M: length, C.GAIT_SPEED_M_S: length / stride_t,
            C.COP_AP_START_FL: 0.15, C.COP_ML_START_FW: 0.0, C.COP_AP_END_FL: 0.82, C.COP_ML_END_FW: -0.1,
            C.GAIT_LINE_LENGTH_FL: 0.66, C.GAIT_LINE_WIDTH_FW: 0.19,
            C.COP_ML_MEAN_FW: 0.02 + 0.8 * (story.lateral_shift * progress + day_lat) + 0.01 * rng.standard_normal(n),
            C.LATERAL_LOAD_FRACTION: lateral, C.MEDIAL_LOAD_FRACTION: 1 - lateral,
            C.HEEL_LOAD_FRACTION: heel, C.MIDFOOT_LOAD_FRACTION: 0.45 + 0.0 * heel, C.FOREFOOT_LOAD_FRACTION: 0.36 - 0.0 * heel,
            C.PEAK_HEEL_LOAD: 700 * heel / 0.19, C.PEAK_LOAD: 1080.0, C.STRIDE_LENGTH_SOURCE: "imu_zupt", C.LOAD_UNIT: "kPa",
            C.BOUT_ID: 0,
        }))
    return pd.concat(rows, ignore_index=True).sort_values([C.HEEL_STRIKE_S]).reset_index(drop=True)


def add_synthetic_session(store: Store, story: PatientStory, day: date, hour: int, progress: float, strides_n: int,
                          rng: np.random.Generator, *, update_daily: bool = True) -> str:
    session_id = f"fx-{story.pseudonym}-{day:%Y%m%d}-{hour:02d}"
    start = _us(day, hour)
    table = synthetic_strides(story, progress, strides_n, rng)
    walk_s = float(table[C.STRIDE_TIME_S].sum() / 2)
    duration_s = walk_s * 1.25 + 60
    store.open_session(session_id, story.pseudonym, start, {"L": f"{story.pseudonym}-L", "R": f"{story.pseudonym}-R"})
    store.close_session(session_id, start + int(duration_s * 1e6), "stopped")
    summary = {"strides_n": len(table), "walking_time_s": round(walk_s, 3), "session_start_us": start,
               C.CADENCE_STEPS_PER_MIN: float(table[C.CADENCE_STEPS_PER_MIN].median()),
               "mean_stride_length_m": float(table[C.STRIDE_LENGTH_M].mean()),
               "mean_stride_time_s": float(table[C.STRIDE_TIME_S].mean()), "source_format": "fixture"}
    store.save_session_results(session_id, story.pseudonym, day.isoformat(), table, summary)
    if update_daily:
        from processing.service import update_daily_summary

        update_daily_summary(store, story.pseudonym, day.isoformat())
    return session_id


def add_simulated_session(store: Store, story: PatientStory, day: date, hour: int, progress: float, *,
                          walk_s: float = 20.0, seed: int = 0, archive=None, first_seq: int = 0) -> str:
    """A real walk: simulator -> device blocks -> Store.add_raw_batch -> ProcessingService.finish_session
    (which also writes the raw archive when ``archive`` is a :class:`processing.archive.RawArchive`)."""
    from insole_common.codec import Batch, PressureUnit
    from processing.service import ProcessingService
    from simulator import SimulationParams, simulate
    from simulator.device import ACC_SCALE_G, GYRO_SCALE_DPS, PRESSURE_SCALE_KPA, device_blocks

    session_id = f"sim-{story.pseudonym}-{day:%Y%m%d}-{hour:02d}"
    start = _us(day, hour)
    sim = simulate(SimulationParams(duration_s=walk_s, imu=True, cadence_spm=108.0 * story.cadence_factor ** progress,
                                    stride_length_m=1.32 * (1 + (story.stride_factor - 1) * progress),
                                    lateral_shift_fw=story.lateral_shift * progress), seed=seed)
    devices = {side: f"{story.pseudonym}-{side}" for side in ("L", "R")}
    store.open_session(session_id, story.pseudonym, start, devices)
    for side in ("L", "R"):
        blocks = list(device_blocks(sim, side, frames_per_block=50))
        dev0 = blocks[0].device_time_us
        for b in blocks:
            store.add_raw_batch(Batch(
                device_id=devices[side], side=side, sample_rate_hz=b.sample_rate_hz, first_seq=first_seq + b.first_seq,
                device_time_us=b.device_time_us, collector_time_us=start + (b.device_time_us - dev0),
                pressure_raw=b.pressure_counts, layout_id=1, pressure_unit=PressureUnit.KPA,
                pressure_scale=PRESSURE_SCALE_KPA, imu_raw=b.imu_counts, acc_scale_g=ACC_SCALE_G,
                gyro_scale_dps=GYRO_SCALE_DPS), story.pseudonym, session_id)
    service = ProcessingService(store, analyze_on_close=True, archive=archive)
    service.close_session(session_id, start + int(walk_s * 1e6), "stopped")
    return session_id


def add_baselines_and_flags(store: Store, patient: str, first_day: date, last_day: date, *, now_us: int) -> None:
    """Baselines over the first two weeks (from the stored daily medians) and flags where the last week differs."""
    from dashboards.data import TREND_METRICS, daily_table

    table = daily_table(store, patient)
    base_end = first_day + timedelta(days=13)
    base = table[table["day"] <= base_end.isoformat()]
    last = table[table["day"] >= (last_day - timedelta(days=6)).isoformat()]
    for m in TREND_METRICS:
        values = base[m.key].dropna()
        if len(values) < 3:
            continue
        mean, sd = float(values.mean()), max(float(values.std()), 1e-6)
        store.execute(
            "INSERT INTO baselines (patient, metric, start_day, end_day, mean, sd, days_n, source, set_by, updated_us) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'auto', NULL, ?) ON CONFLICT (patient, metric) DO UPDATE SET mean = excluded.mean, "
            "sd = excluded.sd, start_day = excluded.start_day, end_day = excluded.end_day, days_n = excluded.days_n",
            (patient, m.key, first_day.isoformat(), base_end.isoformat(), mean, sd, len(values), now_us))
        current = float(last[m.key].median()) if last[m.key].notna().any() else mean
        threshold = 2.77 * sd
        if abs(current - mean) > threshold:
            evidence = {"window": f"{(last_day - timedelta(days=6)).isoformat()}..{last_day.isoformat()}",
                        "days_over_threshold": int((abs(last[m.key] - mean) > threshold).sum()),
                        "direction": "up" if current > mean else "down", "method": "fixture: |median - mean| > 2.77 SD"}
            store.execute(
                "INSERT INTO flags (patient, kind, metric, state, day, baseline, current, threshold, effect_size, days_n, "
                "evidence_json, created_us) VALUES (?, 'compensation', ?, 'raised', ?, ?, ?, ?, ?, ?, ?, ?)",
                (patient, m.key, (last_day - timedelta(days=2)).isoformat(), mean, current, threshold,
                 (current - mean) / sd, len(last), json.dumps(evidence), now_us))


def build_fixture(store: Store, *, today: date, days: int = 42, strides_per_session: int = 40,
                  simulated_walk_s: float | None = 20.0, accounts: bool = True, archive=None) -> dict:
    """Fill ``store``; returns what was created (``sessions`` per patient, ``simulated`` session ids)."""
    migrate(store)
    rng = np.random.default_rng(6)
    first = today - timedelta(days=days - 1)
    now_us = _us(today, 20)
    created: dict = {"sessions": {s.pseudonym: [] for s in STORIES}, "simulated": {}}
    onset = max(0, days - 14)
    for i in range(days):
        day = first + timedelta(days=i)
        progress = 0.0 if i < onset else (i - onset + 1) / (days - onset)
        for k, story in enumerate(STORIES):
            if i % 7 == 5 and story.pseudonym == "pat-b":
                continue  # a day without walks
            last = i == days - 1
            if last and simulated_walk_s:
                sid = add_simulated_session(store, story, day, 9 + k, progress, walk_s=simulated_walk_s, seed=k,
                                            archive=archive)
                created["simulated"][story.pseudonym] = sid
            else:
                sid = add_synthetic_session(store, story, day, 9 + k, progress, strides_per_session, rng)
            created["sessions"][story.pseudonym].append(sid)
    for story in STORIES:
        add_baselines_and_flags(store, story.pseudonym, first, today, now_us=now_us)
    if accounts:
        for username, role, name, patient in FIXTURE_ACCOUNTS:
            add_account(store, username, role, FIXTURE_PASSWORD, display_name=name, patient=patient)
        for therapist, patients in FIXTURE_ASSIGNMENTS.items():
            for p in patients:
                assign_patient(store, therapist, p)
        store.execute("INSERT INTO notes (patient, author, time_us, text) VALUES (?, ?, ?, ?)",
                      ("pat-a", "ther-1", now_us - 86_400_000_000, "Reports heel pain in the morning; started calf stretches."))
    for patient, cohort in FIXTURE_COHORTS.items():
        set_cohort(store, patient, cohort)
    return created


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port) in a background thread, for browser tests."""

    def __init__(self, app) -> None:
        import socket

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off", timeout_graceful_shutdown=2))
        import threading

        self.thread = threading.Thread(target=self.server.run, name="dashboard-server", daemon=True)

    def __enter__(self) -> "ServerThread":
        import time

        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise RuntimeError("the dashboard server did not start")
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
