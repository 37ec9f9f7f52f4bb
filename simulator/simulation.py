"""``simulate()``: parameters + seed -> a bilateral :class:`Recording` plus its ground truth."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from insole_common.codec import SIDES, Side, quantize
from insole_common.layouts import SensorLayout, centre_of_pressure, get_layout
from insole_common.recording import FootRecording, Recording
from processing.readers.kinetic import write_recording
from simulator import device
from simulator.consts import BOUT_COLUMNS, EVENT_COLUMNS, FOOT_CONTACT_AREA_M2, GRAVITY_M_S2, LEFT_CLOCK_OFFSET_S
from simulator.force import SwaySignals, foot_force, static_model
from simulator.gait import gait_sequences, plan_gait
from simulator.imu import foot_imu
from simulator.params import SimulationParams, resolve_schedule
from simulator.pressure import offload_heel, sensor_shares

SOURCE_FORMAT = "kinetic-simulator"
SIMULATOR_VERSION = 1


@dataclass(frozen=True)
class DeviceClock:
    """One insole's clock against true time: ``device_s = offset_s + t_s * (1 + drift_ppm * 1e-6)``.

    The samples themselves sit on the true-time grid of ``sim.recording``; only the
    device's timestamps drift. ``clock["R"]["drift_ppm"]`` works as well as ``.drift_ppm``.
    """

    offset_s: float
    drift_ppm: float

    def device_time_s(self, t_s: np.ndarray | float) -> np.ndarray | float:
        return self.offset_s + np.asarray(t_s) * (1.0 + self.drift_ppm * 1e-6)

    def true_time_s(self, device_s: np.ndarray | float) -> np.ndarray | float:
        return (np.asarray(device_s) - self.offset_s) / (1.0 + self.drift_ppm * 1e-6)

    def __getitem__(self, key: str) -> float:
        return getattr(self, key)

    def to_dict(self) -> dict[str, float]:
        return {"offset_s": self.offset_s, "drift_ppm": self.drift_ppm}


@dataclass(eq=False)
class GroundTruth:
    """What was injected and what really happened, beside the data."""

    #: one row per stride; columns in simulator.consts.EVENT_COLUMNS
    events: pd.DataFrame
    #: start_s, end_s, activity
    bouts: pd.DataFrame
    #: injected parameters (SimulationParams fields plus derived values)
    params: dict[str, Any]
    clock: dict[Side, DeviceClock]
    #: per side, True where the sample reached the collector
    delivered: dict[Side, np.ndarray]
    #: per side, noise-free total vertical force (N) on the recording's grid
    force_n: dict[Side, np.ndarray]
    seed: int | None

    def to_json(self) -> str:
        walking = self.events[self.events["activity"] == "walking"]
        summary = {
            "n_strides": {s: int((self.events["side"] == s).sum()) for s in SIDES},
            "n_walking_strides": int(len(walking)),
            "walking_stance_fraction": _nanmean(walking["stance_time_s"] / walking["stride_time_s"]),
            "walking_cadence_spm": _nanmean(120.0 / walking["stride_time_s"]),
            "walking_stride_length_m": _nanmean(walking["stride_length_m"]),
            "delivered_fraction": {s: float(np.mean(m)) for s, m in self.delivered.items()},
        }
        doc = {
            "simulator_version": SIMULATOR_VERSION,
            "seed": self.seed,
            "params": self.params,
            "clock": {s: c.to_dict() for s, c in self.clock.items()},
            "summary": summary,
        }
        return json.dumps(doc, indent=2, sort_keys=True)


def _nanmean(x: pd.Series) -> float | None:
    return float(np.nanmean(x)) if len(x) else None


@dataclass(eq=False)
class Simulation:
    """A simulated recording (what the collector would have stored) and its ground truth."""

    recording: Recording
    truth: GroundTruth
    params: SimulationParams

    def write(self, out_dir: str | Path) -> Path:
        """Write the recording (kinetic format) to ``out_dir`` and truth to ``out_dir/truth/``."""
        out = write_recording(self.recording, out_dir)
        tdir = out / "truth"
        tdir.mkdir(parents=True, exist_ok=True)
        self.truth.events.to_csv(tdir / "events.csv", index=False)
        self.truth.bouts.to_csv(tdir / "bouts.csv", index=False)
        (tdir / "truth.json").write_text(self.truth.to_json())
        return out


def sensor_area_m2(layout: SensorLayout) -> float:
    """Area each sensor represents: pressure (kPa) * 1000 * this, summed over channels = force (N)."""
    return FOOT_CONTACT_AREA_M2 / layout.n_channels


def simulate(params: SimulationParams | None = None, seed: int | None = 0) -> Simulation:
    """Simulate a bilateral recording. Deterministic for a given ``seed``.

    Independent random streams drive the schedule, the gait, the sway, the sensor
    noise, the IMU noise and the packet loss, so that e.g. changing
    ``lateral_shift_fw`` or ``imu`` leaves every event time unchanged.
    """
    p = params or SimulationParams()
    streams = np.random.SeedSequence(seed).spawn(7)
    rng_sched, rng_gait, rng_sway, rng_noise, rng_imu, rng_loss_l, rng_loss_r = (
        np.random.default_rng(s) for s in streams)
    rng_loss = {"L": rng_loss_l, "R": rng_loss_r}
    layout = get_layout(p.layout)
    bouts = resolve_schedule(p, rng_sched)
    fs = p.sample_rate_hz
    n = int(math.floor(bouts[-1][1] * fs + 1e-9))
    t = np.arange(n) / fs
    seqs = gait_sequences(bouts)
    plans = plan_gait(bouts, p, rng_gait)
    sway = SwaySignals(rng_sway, 7)
    body_weight_n = p.body_mass_kg * GRAVITY_M_S2
    area = sensor_area_m2(layout)
    in_seq = np.zeros(n, dtype=bool)
    for a, b, _ in seqs:
        in_seq[np.searchsorted(t, a):np.searchsorted(t, b)] = True

    feet: dict[Side, FootRecording] = {}
    event_frames = []
    delivered: dict[Side, np.ndarray] = {}
    force_n: dict[Side, np.ndarray] = {}
    noise = rng_noise.standard_normal((2, n, layout.n_channels))
    for i, side in enumerate(SIDES):
        plan = plans[side]
        static = static_model(t, bouts, 1.0 if side == "L" else -1.0, i, sway)
        shift_fw, forefoot_shift_fw = p.lateral_shift_on(side)
        load_bw, ap, ml, stance_idx = foot_force(t, plan, seqs, static, shift_fw, pain=p.pain_on(side),
                                                 forefoot_shift_fw=forefoot_shift_fw)
        loaded = np.flatnonzero(load_bw > 0)
        shares = sensor_shares(layout, ap[loaded], ml[loaded])
        shares = offload_heel(layout, shares, p.heel_offload_on(side), np.flatnonzero(in_seq[loaded]))
        clean = np.zeros((n, layout.n_channels))
        clean[loaded] = shares * (load_bw[loaded] * body_weight_n / area / 1000.0)[:, None]
        noisy = np.clip(clean + p.noise_kpa * noise[i], 0.0, None)
        pressure = quantize(noisy, device.PRESSURE_SCALE_KPA).astype(np.float64) * device.PRESSURE_SCALE_KPA
        ok = _delivered_mask(n, p, rng_loss[side])
        pressure[~ok] = np.nan
        arr = plan.arrays()
        acc, gyro = _imu(t, arr, ok, p, rng_imu) if p.imu else (None, None)
        feet[side] = FootRecording(
            side=side, sample_rate_hz=fs, t0_s=0.0, pressure=pressure, pressure_unit="kPa", layout=layout,
            acc_g=acc, gyro_dps=gyro, seq=np.arange(n, dtype=np.uint64), device_id=f"sim-{side}",
        )
        delivered[side] = ok
        force_n[side] = load_bw * body_weight_n
        event_frames.append(_stride_table(side, arr, layout, clean, stance_idx))

    truth = _ground_truth(p, seed, bouts, event_frames, delivered, force_n, body_weight_n=body_weight_n, area=area)
    meta = {"simulator_version": SIMULATOR_VERSION, "seed": seed, "sensor_area_m2": area,
            "body_mass_kg": p.body_mass_kg, "simulated": True}
    recording = Recording(feet=feet, source_format=SOURCE_FORMAT, meta=meta)
    return Simulation(recording=recording, truth=truth, params=p)


def _imu(t: np.ndarray, arr: dict[str, np.ndarray], ok: np.ndarray, p: SimulationParams,
         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One foot's accelerometer (g) and gyroscope (deg/s): noise-free signals plus sensor noise, quantised as the
    device sends them, NaN where the sample was lost."""
    acc, gyro = foot_imu(t, arr)
    acc = acc + p.imu_acc_noise_g * rng.standard_normal(acc.shape)
    gyro = gyro + p.imu_gyro_noise_dps * rng.standard_normal(gyro.shape)
    acc = quantize(acc, device.ACC_SCALE_G, dtype=np.int16) * device.ACC_SCALE_G
    gyro = quantize(gyro, device.GYRO_SCALE_DPS, dtype=np.int16) * device.GYRO_SCALE_DPS
    acc[~ok] = np.nan
    gyro[~ok] = np.nan
    return acc, gyro


def _ground_truth(p: SimulationParams, seed: int | None, bouts: list[tuple[float, float, str]],
                  event_frames: list[pd.DataFrame], delivered: dict[Side, np.ndarray], force_n: dict[Side, np.ndarray],
                  *, body_weight_n: float, area: float) -> GroundTruth:
    """The strides of both feet in time order, the bouts, the injected parameters and the device clocks."""
    events = pd.concat(event_frames, ignore_index=True).sort_values("heel_strike_s", kind="stable")
    events = events.reset_index(drop=True)[list(EVENT_COLUMNS)]
    bouts_df = pd.DataFrame(bouts, columns=list(BOUT_COLUMNS))
    clock: dict[Side, DeviceClock] = {
        "L": DeviceClock(offset_s=LEFT_CLOCK_OFFSET_S, drift_ppm=0.0),
        "R": DeviceClock(offset_s=LEFT_CLOCK_OFFSET_S + p.clock_offset_s, drift_ppm=p.clock_drift_ppm),
    }
    truth_params = p.to_dict() | {
        "schedule_resolved": [[a, s, e] for s, e, a in bouts],
        "clock": {s: c.to_dict() for s, c in clock.items()},
        "body_weight_n": body_weight_n,
        "sensor_area_m2": area,
        "stride_time_s": p.stride_time_s,
        "walking_stride_length_m": p.walking_stride_length_m,
        "walking_speed_factor": p.walking_speed_factor,
        "effective_asymmetry": p.effective_asymmetry,
        "unaffected_side": "L" if p.affected_side == "R" else "R",
    }
    return GroundTruth(events=events, bouts=bouts_df, params=truth_params, clock=clock, delivered=delivered,
                       force_n=force_n, seed=seed)


def _stride_table(side: Side, arr: dict[str, np.ndarray], layout: SensorLayout, clean: np.ndarray,
                  stance_idx: np.ndarray) -> pd.DataFrame:
    m = len(arr["hs"])
    _, ml_cop = centre_of_pressure(layout, clean)
    use = (stance_idx >= 0) & np.isfinite(ml_cop)
    k = stance_idx[use]
    count = np.bincount(k, minlength=m)
    ml_mean = np.bincount(k, weights=ml_cop[use], minlength=m) / np.maximum(count, 1)
    heel = clean[:, layout.region_mask("heel")].sum(axis=1)
    total = clean.sum(axis=1)
    heel_frac = np.bincount(k, weights=heel[use], minlength=m) / np.maximum(
        np.bincount(k, weights=total[use], minlength=m), 1e-300)
    stance = arr["to"] - arr["hs"]
    stride = arr["next_hs"] - arr["hs"]
    return pd.DataFrame({
        "side": side,
        "activity": arr["activity"].astype(str),
        "heel_strike_s": arr["hs"],
        "toe_off_s": arr["to"],
        "next_heel_strike_s": arr["next_hs"],
        "stride_time_s": stride,
        "stance_time_s": stance,
        "swing_time_s": stride - stance,
        "stride_length_m": arr["stride_length"],
        "ml_cop_fw": np.where(count > 0, ml_mean, np.nan),
        "heel_load_fraction": np.where(count > 0, heel_frac, np.nan),
        "terminal": arr["terminal"],
    })


def _delivered_mask(n: int, p: SimulationParams, rng: np.random.Generator) -> np.ndarray:
    """Frames delivered, losing whole blocks of ``frames_per_block`` in bursts (two-state run lengths)."""
    fpb = p.frames_per_block
    n_blocks = -(-n // fpb)
    frac = p.packet_loss_fraction
    if frac <= 0 or n_blocks == 0:
        return np.ones(n, dtype=bool)
    bad_mean = p.packet_loss_burst_blocks
    good_mean = bad_mean * (1 - frac) / frac
    if good_mean < 1.0:
        good_mean, bad_mean = 1.0, frac / (1 - frac)
    block_ok = np.empty(0, dtype=bool)
    state_good = rng.random() >= frac
    while len(block_ok) < n_blocks:
        m = int(2 * n_blocks / (good_mean + bad_mean)) + 8
        good = rng.geometric(1.0 / good_mean, size=m)
        bad = rng.geometric(1.0 / bad_mean, size=m)
        first, second = (good, bad) if state_good else (bad, good)
        lengths = np.column_stack([first, second]).ravel()
        values = np.tile([state_good, not state_good], m)
        block_ok = np.concatenate([block_ok, np.repeat(values, lengths)])
    return np.repeat(block_ok[:n_blocks], fpb)[:n]
