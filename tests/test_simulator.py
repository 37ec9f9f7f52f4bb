"""Simulator: determinism, physiology, injected shifts, packet loss, clocks, IMU, device emulation, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from insole_common.errors import ValidationError
from insole_common.layouts import centre_of_pressure
from kinetic.cli import main
from processing.readers.kinetic import read_recording
from simulator import SimulationParams, device, simulate
from simulator.consts import BOUT_COLUMNS, EVENT_COLUMNS, GRAVITY_M_S2
from simulator.simulation import sensor_area_m2

WALK = (("standing", 3.0), ("walking", 30.0), ("standing", 3.0))


@pytest.fixture(scope="module")
def walk():
    return simulate(SimulationParams(schedule=WALK), seed=3)


@pytest.fixture(scope="module")
def mixed():
    return simulate(SimulationParams(duration_s=240.0, packet_loss_fraction=0.05, clock_drift_ppm=80.0,
                                     clock_offset_s=1.5), seed=11)


def stance_mask(sim, side: str, *, min_force_bw: float = 0.0) -> np.ndarray:
    """Samples inside the truth stances of walking strides, optionally above a force threshold."""
    foot = sim.recording.feet[side]
    t = foot.t_s
    ev = sim.truth.events
    ev = ev[(ev["side"] == side) & (ev["activity"] == "walking")]
    k = np.searchsorted(ev["heel_strike_s"].to_numpy(), t, side="right") - 1
    kc = np.clip(k, 0, None)
    inside = (k >= 0) & (t < ev["toe_off_s"].to_numpy()[kc])
    bw = sim.truth.params["body_weight_n"]
    return inside & (sim.truth.force_n[side] > min_force_bw * bw)


def test_same_seed_same_data_other_seed_other_data() -> None:
    params = SimulationParams(duration_s=40.0, packet_loss_fraction=0.1)
    a, b, c = simulate(params, seed=5), simulate(params, seed=5), simulate(params, seed=6)
    pd.testing.assert_frame_equal(a.truth.events, b.truth.events)
    for side in "LR":
        np.testing.assert_array_equal(a.recording.feet[side].pressure, b.recording.feet[side].pressure)
        np.testing.assert_array_equal(a.recording.feet[side].acc_g, b.recording.feet[side].acc_g)
        np.testing.assert_array_equal(a.truth.delivered[side], b.truth.delivered[side])
    assert not a.truth.events["heel_strike_s"].equals(c.truth.events["heel_strike_s"])


def test_api_shapes_and_columns(mixed) -> None:
    rec = mixed.recording
    assert set(rec.feet) == {"L", "R"}
    for foot in rec.feet.values():
        assert foot.pressure_unit == "kPa" and foot.layout.name == "kc16" and foot.pressure.shape[1] == 16
        assert foot.has_imu and foot.acc_g.shape == (foot.n_samples, 3)
        assert foot.n_samples == pytest.approx(240.0 * 100, abs=1)
    assert tuple(mixed.truth.events.columns) == EVENT_COLUMNS
    assert tuple(mixed.truth.bouts.columns) == BOUT_COLUMNS
    bouts = mixed.truth.bouts
    assert bouts["start_s"].iloc[0] == 0 and np.allclose(bouts["start_s"].iloc[1:], bouts["end_s"].iloc[:-1])
    assert {"walking", "standing", "sitting"} <= set(bouts["activity"])
    for key in ("lateral_shift_fw", "heel_offload_fraction", "asymmetry", "affected_side", "clock"):
        assert key in mixed.truth.params
    doc = json.loads(mixed.truth.to_json())
    assert doc["clock"]["R"]["drift_ppm"] == 80.0 and doc["params"]["packet_loss_fraction"] == 0.05


def test_walking_timing_is_physiological(walk) -> None:
    ev = walk.truth.events
    w = ev[(ev["activity"] == "walking") & ~ev["terminal"]]
    stance_pct = 100 * w["stance_time_s"] / w["stride_time_s"]
    assert 57 <= stance_pct.mean() <= 66
    cadence = 120.0 / w["stride_time_s"].mean()
    assert cadence == pytest.approx(105.0, rel=0.03)
    assert w["stride_length_m"].mean() == pytest.approx(1.30, rel=0.03)
    cv = w["stride_time_s"].std() / w["stride_time_s"].mean()
    assert 0.008 < cv < 0.04  # variability_cv = 0.02: strides differ, but not wildly
    # the feet alternate: heel strikes interleave L, R, L, R
    sides = ev.sort_values("heel_strike_s")["side"].to_numpy()
    assert (sides[1:] != sides[:-1]).all()
    # double support: both feet loaded ~20-25 % of the walking time, never both in the air
    seq = (walk.recording.feet["L"].t_s > 5.0) & (walk.recording.feet["L"].t_s < 30.0)
    on_l = walk.truth.force_n["L"][seq] > 0
    on_r = walk.truth.force_n["R"][seq] > 0
    assert 0.15 < np.mean(on_l & on_r) < 0.30
    assert not np.any(~on_l & ~on_r)


def test_events_are_exact_force_zero_crossings(walk) -> None:
    fs = 100.0
    for side in "LR":
        force = walk.truth.force_n[side]
        ev = walk.truth.events[walk.truth.events["side"] == side]
        hs, to = ev["heel_strike_s"].to_numpy(), ev["toe_off_s"].to_numpy()
        assert not np.allclose(hs * fs, np.round(hs * fs))  # continuous time, not sample-rounded
        first_on = np.floor(hs * fs).astype(int) + 1  # first sample after the heel strike
        assert (force[first_on - 1] == 0).all() and (force[first_on] > 0).all()
        last_on = np.ceil(to * fs).astype(int) - 1  # last sample before the toe-off
        assert (force[last_on] > 0).all() and (force[last_on + 1] == 0).all()


def test_vertical_force_has_a_double_hump(walk) -> None:
    bw = walk.truth.params["body_weight_n"]
    t = walk.recording.feet["L"].t_s
    ev = walk.truth.events[(walk.truth.events["side"] == "L") & ~walk.truth.events["terminal"]]
    for _, row in ev.iterrows():
        m = (t >= row.heel_strike_s) & (t < row.toe_off_s)
        f = walk.truth.force_n["L"][m] / bw
        u = (t[m] - row.heel_strike_s) / row.stance_time_s
        first, mid, second = f[u < 0.4].max(), f[(u > 0.4) & (u < 0.6)].min(), f[u > 0.6].max()
        assert 1.05 < first < 1.35 and 1.0 < second < 1.3
        assert 0.6 < mid < 0.9 and mid < first - 0.2 and mid < second - 0.2
        # steep loading: half the first peak within the first 10 % of stance
        assert f[u < 0.10].max() > 0.5 * first


def test_cop_runs_heel_to_toe(walk) -> None:
    foot = walk.recording.feet["R"]
    ap, _ = centre_of_pressure(foot.layout, foot.pressure)
    t = foot.t_s
    ev = walk.truth.events[(walk.truth.events["side"] == "R") & ~walk.truth.events["terminal"]]
    force = walk.truth.force_n["R"]
    bw = walk.truth.params["body_weight_n"]
    for _, row in ev.iterrows():
        m = (t >= row.heel_strike_s) & (t < row.toe_off_s) & (force > 0.2 * bw)
        u = (t[m] - row.heel_strike_s) / row.stance_time_s
        early, late = np.nanmean(ap[m][u < 0.15]), np.nanmean(ap[m][u > 0.85])
        assert early < 0.25 and late > 0.7
        assert np.corrcoef(u, ap[m])[0, 1] > 0.95


@pytest.mark.parametrize("shift_fw", [0.06, -0.05])
def test_lateral_shift_is_recovered_from_centre_of_pressure(shift_fw: float) -> None:
    base = simulate(SimulationParams(schedule=WALK), seed=4)
    shifted = simulate(SimulationParams(schedule=WALK, lateral_shift_fw=shift_fw), seed=4)
    pd.testing.assert_series_equal(base.truth.events["toe_off_s"], shifted.truth.events["toe_off_s"])
    # truth: the realised noise-free stance ML COP moved by exactly the shift
    moved = shifted.truth.events["ml_cop_fw"] - base.truth.events["ml_cop_fw"]
    np.testing.assert_allclose(moved, shift_fw, atol=1e-8)
    # data: the same from the noisy, quantised recording
    means = []
    for sim in (base, shifted):
        vals = []
        for side in "LR":
            foot = sim.recording.feet[side]
            _, ml = centre_of_pressure(foot.layout, foot.pressure)
            vals.append(np.nanmean(ml[stance_mask(sim, side, min_force_bw=0.1)]))
        means.append(np.mean(vals))
    assert means[1] - means[0] == pytest.approx(shift_fw, abs=0.002)


def test_heel_offload_reduces_heel_fraction() -> None:
    base = simulate(SimulationParams(schedule=WALK), seed=4)
    off = simulate(SimulationParams(schedule=WALK, heel_offload_fraction=0.3), seed=4)
    ratio = off.truth.events["heel_load_fraction"] / base.truth.events["heel_load_fraction"]
    np.testing.assert_allclose(ratio, 0.7, rtol=1e-9)
    fractions, aps = [], []
    for sim in (base, off):
        foot = sim.recording.feet["L"]
        m = stance_mask(sim, "L", min_force_bw=0.1)
        heel = foot.pressure[m][:, foot.layout.region_mask("heel")].sum()
        fractions.append(heel / foot.pressure[m].sum())
        aps.append(np.nanmean(centre_of_pressure(foot.layout, foot.pressure[m])[0]))
    assert fractions[1] / fractions[0] == pytest.approx(0.7, abs=0.02)
    assert aps[1] > aps[0] + 0.01  # load moved forward
    # the total force is unchanged: heel load was redistributed, not removed
    np.testing.assert_allclose(off.truth.force_n["L"], base.truth.force_n["L"])


def test_asymmetry_shortens_stance_and_lowers_load_on_the_affected_side() -> None:
    sim = simulate(SimulationParams(schedule=WALK, asymmetry=0.2, affected_side="L"), seed=2)
    w = sim.truth.events[sim.truth.events["activity"] == "walking"]
    stance = w.groupby("side")["stance_time_s"].mean()
    assert stance["L"] / stance["R"] == pytest.approx(0.9 / 1.1, abs=0.03)
    peak = {s: np.percentile(sim.truth.force_n[s][stance_mask(sim, s)], 95) for s in "LR"}
    assert peak["L"] / peak["R"] == pytest.approx(0.9 / 1.1, abs=0.04)


def test_static_activities_and_labels(mixed) -> None:
    bw = mixed.truth.params["body_weight_n"]
    t = mixed.recording.feet["L"].t_s
    area = sensor_area_m2(mixed.recording.feet["L"].layout)
    for _, bout in mixed.truth.bouts.iterrows():
        core = (t > bout.start_s + 0.8) & (t < bout.end_s - 0.8)
        if bout.activity not in ("standing", "sitting") or not core.any():
            continue
        per_foot = [np.median(mixed.truth.force_n[s][core]) / bw for s in "LR"]
        if bout.activity == "standing":
            assert all(0.35 < f < 0.65 for f in per_foot) and sum(per_foot) == pytest.approx(1.0, abs=0.05)
        else:
            assert all(0.08 < f < 0.25 for f in per_foot)
        # what the pressure sensors say agrees with the noise-free force (noise and loss aside)
        foot = mixed.recording.feet["R"]
        measured = np.nanmedian(foot.pressure[core].sum(axis=1)) * 1000 * area / bw
        assert measured == pytest.approx(per_foot[1], abs=0.05)
    # every stride is labelled with the bout its heel strike falls in
    ev = mixed.truth.events
    bouts = mixed.truth.bouts
    i = np.searchsorted(bouts["start_s"].to_numpy(), ev["heel_strike_s"].to_numpy(), side="right") - 1
    assert (bouts["activity"].to_numpy()[i] == ev["activity"].to_numpy()).all()
    assert {"walking", "turning", "shuffling"} <= set(ev["activity"])
    turning = ev[ev["activity"] == "turning"]["stride_length_m"].mean()
    shuffling = ev[ev["activity"] == "shuffling"]["stride_length_m"].mean()
    walking = ev[(ev["activity"] == "walking") & ~ev["terminal"]]["stride_length_m"].mean()
    assert shuffling < 0.4 < turning < walking


def test_turning_shows_yaw_rate_and_straight_walking_does_not(mixed) -> None:
    foot = mixed.recording.feet["L"]
    t = foot.t_s
    bouts = mixed.truth.bouts
    turns = bouts[bouts["activity"] == "turning"]
    assert len(turns)
    for _, b in turns.iterrows():
        m = (t > b.start_s) & (t < b.end_s)
        # yaw summed over the bout ~ the 180° turn (some swings straddle the bout edges)
        yaw = np.nansum(foot.gyro_dps[m, 2]) / 100.0
        assert 90 < abs(yaw) < 200 and np.nanmax(np.abs(foot.gyro_dps[m, 2])) > 50
    walk = bouts[bouts["activity"] == "walking"].iloc[0]
    m = (t > walk.start_s + 3) & (t < walk.end_s - 3)
    assert np.nanmax(np.abs(foot.gyro_dps[m, 2])) < 3
    assert np.nanmax(np.abs(foot.gyro_dps[m, 1])) > 200  # foot pitch in swing


def test_packet_loss_drops_whole_blocks_as_nan_rows(mixed) -> None:
    fpb = mixed.params.frames_per_block
    for side, foot in mixed.recording.feet.items():
        ok = mixed.truth.delivered[side]
        np.testing.assert_array_equal(foot.missing, ~ok)
        assert np.isnan(foot.acc_g[~ok]).all() and np.isfinite(foot.acc_g[ok]).all()
        assert np.isfinite(foot.pressure[ok]).all()
        n_full = len(ok) // fpb * fpb
        blocks = ok[:n_full].reshape(-1, fpb)
        assert (blocks.all(axis=1) | ~blocks.any(axis=1)).all()  # a block is delivered whole or not at all
        assert 0.02 < 1 - ok.mean() < 0.09
    assert not np.array_equal(mixed.truth.delivered["L"], mixed.truth.delivered["R"])


def test_clock_truth(mixed) -> None:
    clock = mixed.truth.clock
    assert clock["L"].drift_ppm == 0 and clock["R"]["drift_ppm"] == 80.0
    assert clock["R"].offset_s - clock["L"].offset_s == pytest.approx(1.5)
    t = np.array([0.0, 100.0, 200.0])
    np.testing.assert_allclose(clock["R"].device_time_s(t) - clock["R"].offset_s, t * (1 + 80e-6))
    np.testing.assert_allclose(clock["R"].true_time_s(clock["R"].device_time_s(t)), t)


def test_device_blocks_reproduce_the_recording(mixed) -> None:
    for side in "LR":
        foot = mixed.recording.feet[side]
        blocks = list(device.device_blocks(mixed, side))
        seqs = np.concatenate([b.first_seq + np.arange(len(b.pressure_counts)) for b in blocks])
        np.testing.assert_array_equal(seqs, np.flatnonzero(mixed.truth.delivered[side]))
        assert all(1 <= len(b.pressure_counts) <= mixed.params.frames_per_block for b in blocks)
        assert blocks[0].pressure_counts.dtype == np.uint16 and blocks[0].imu_counts.dtype == np.int16
        pressure = np.concatenate([b.pressure_counts for b in blocks]) * device.PRESSURE_SCALE_KPA
        np.testing.assert_allclose(pressure, foot.pressure[seqs], atol=1e-9)
        imu = np.concatenate([b.imu_counts for b in blocks])
        np.testing.assert_allclose(imu[:, :3] * device.ACC_SCALE_G, foot.acc_g[seqs], atol=1e-9)
        np.testing.assert_allclose(imu[:, 3:] * device.GYRO_SCALE_DPS, foot.gyro_dps[seqs], atol=1e-9)
        # device timestamps follow the truth clock: offset plus drift against true sample time
        first = np.array([b.first_seq for b in blocks])
        dev_s = np.array([b.device_time_us for b in blocks]) / 1e6
        np.testing.assert_allclose(mixed.truth.clock[side].true_time_s(dev_s), first / 100.0, atol=1e-6)
    # over 240 s, 80 ppm of drift adds 19.2 ms to the right clock only
    last_r = list(device.device_blocks(mixed, "R"))[-1]
    elapsed_r = last_r.device_time_us / 1e6 - mixed.truth.clock["R"].offset_s
    assert elapsed_r - last_r.first_seq / 100.0 == pytest.approx(last_r.first_seq / 100.0 * 80e-6, abs=2e-6)
    # other block sizes never span a lost frame
    blocks = list(device.device_blocks(mixed, "L", frames_per_block=7))
    assert max(len(b.pressure_counts) for b in blocks) == 7
    seqs = np.concatenate([b.first_seq + np.arange(len(b.pressure_counts)) for b in blocks])
    np.testing.assert_array_equal(seqs, np.flatnonzero(mixed.truth.delivered["L"]))


def _expm_skew(w: np.ndarray) -> np.ndarray:
    th = np.linalg.norm(w)
    k = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])
    if th < 1e-12:
        return np.eye(3) + k
    return np.eye(3) + np.sin(th) / th * k + (1 - np.cos(th)) / th**2 * k @ k


def zupt_displacements(acc_g: np.ndarray, gyro_dps: np.ndarray, fs: float) -> list[tuple[float, float, float]]:
    """Minimal zero-velocity-update integration: (start_s, end_s, horizontal displacement m) per movement."""
    dt = 1.0 / fs
    still = (np.linalg.norm(gyro_dps, axis=1) < 2.0) & (np.abs(np.linalg.norm(acc_g, axis=1) - 1) < 0.01)
    rot = np.eye(3)
    a_world = np.zeros_like(acc_g)
    w = np.radians(gyro_dps)
    for i in range(len(acc_g)):
        if i:
            rot = rot @ _expm_skew((w[i - 1] + w[i]) / 2 * dt)
        a_world[i] = rot @ acc_g[i] * GRAVITY_M_S2 - [0.0, 0.0, GRAVITY_M_S2]
    edges = np.flatnonzero(np.diff(still.astype(int)))
    out = []
    for s, e in zip(edges[::2], edges[1::2], strict=False):  # still -> moving at s+1, moving -> still at e+1
        a = a_world[s:e + 2]
        v = np.vstack([np.zeros(3), np.cumsum((a[1:] + a[:-1]) / 2 * dt, axis=0)])
        v -= np.outer(np.linspace(0, 1, len(v)), v[-1])  # zero velocity at both still ends
        p = ((v[1:] + v[:-1]) / 2 * dt).sum(axis=0)
        out.append((s / fs, (e + 1) / fs, float(np.hypot(p[0], p[1]))))
    return out


def test_zupt_on_the_simulated_imu_recovers_stride_length(walk) -> None:
    errors = []
    for side in "LR":
        foot = walk.recording.feet[side]
        assert np.abs(foot.acc_g[:250] - [0, 0, 1]).max() < 0.02  # standing still: gravity only
        moves = zupt_displacements(foot.acc_g, foot.gyro_dps, foot.sample_rate_hz)
        ev = walk.truth.events[walk.truth.events["side"] == side]
        for _, row in ev.iterrows():
            found = [d for s, e, d in moves if s < row.next_heel_strike_s < e]
            assert len(found) == 1
            errors.append(found[0] / row.stride_length_m - 1)
    errors = np.abs(errors)
    assert len(errors) > 40
    assert errors.max() < 0.02 and errors.mean() < 0.01


@pytest.mark.parametrize("layout,n_channels", [("orphe6", 6), ("gaitpdb8", 8)])
def test_other_layouts(layout: str, n_channels: int) -> None:
    sim = simulate(SimulationParams(schedule=WALK, layout=layout, imu=False), seed=1)
    foot = sim.recording.feet["L"]
    assert foot.pressure.shape[1] == n_channels and not foot.has_imu
    ap, _ = centre_of_pressure(foot.layout, foot.pressure)
    row = sim.truth.events.iloc[5]
    foot = sim.recording.feet[row.side]
    ap, _ = centre_of_pressure(foot.layout, foot.pressure)
    t = foot.t_s
    early = (t > row.heel_strike_s + 0.03) & (t < row.heel_strike_s + 0.1)
    late = (t > row.toe_off_s - 0.1) & (t < row.toe_off_s - 0.03)
    assert np.nanmean(ap[early]) < 0.3 and np.nanmean(ap[late]) > 0.65


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(ValidationError, match="cadence"):
        SimulationParams(cadence_spm=5.0)
    with pytest.raises(ValidationError, match="unknown activity"):
        SimulationParams(schedule=(("dancing", 10.0),))
    with pytest.raises(ValidationError, match="at least"):
        SimulationParams(schedule=(("standing", 5.0), ("walking", 1.0), ("standing", 5.0)))
    with pytest.raises(ValidationError, match="layout"):
        SimulationParams(layout="nope")
    with pytest.raises(ValidationError, match="duration_s"):
        SimulationParams(schedule=WALK, duration_s=10.0)


def test_cli_writes_readable_files(tmp_path) -> None:
    out = tmp_path / "sim"
    args = ["simulate", "--out", str(out), "--duration-s", "30", "--lateral-shift-fw", "0.04", "--packet-loss",
            "0.05", "--clock-drift-ppm", "50", "--seed", "7"]
    assert main(args) == 0
    rec = read_recording(out)
    sim = simulate(SimulationParams(duration_s=30.0, lateral_shift_fw=0.04, packet_loss_fraction=0.05,
                                    clock_drift_ppm=50.0), seed=7)
    for side in "LR":
        np.testing.assert_array_equal(rec.feet[side].pressure, sim.recording.feet[side].pressure)
        np.testing.assert_array_equal(rec.feet[side].gyro_dps, sim.recording.feet[side].gyro_dps)
    events = pd.read_csv(out / "truth" / "events.csv")
    assert list(events.columns) == list(EVENT_COLUMNS)
    np.testing.assert_allclose(events["heel_strike_s"], sim.truth.events["heel_strike_s"])
    bouts = pd.read_csv(out / "truth" / "bouts.csv")
    assert bouts["end_s"].iloc[-1] == pytest.approx(30.0)
    truth = json.loads((out / "truth" / "truth.json").read_text())
    assert truth["params"]["lateral_shift_fw"] == 0.04 and truth["clock"]["R"]["drift_ppm"] == 50.0
    assert main(["simulate", "--out", str(tmp_path / "bad"), "--cadence-spm", "1"]) == 2
    assert main(["simulate", "--out", str(tmp_path / "noimu"), "--duration-s", "10", "--no-imu"]) == 0
    assert not read_recording(tmp_path / "noimu").feet["L"].has_imu
