"""Foot-mounted IMU signals derived from the planned foot trajectory of every swing.

Each swing moves the foot between two still, flat periods (foot-flat to heel-off):

* pitch (about the foot's y axis, + = toe down) rises from 0 at heel-off to the toe-off
  angle, swings to the heel-strike angle (toe up) and settles to 0 at foot-flat;
* the sensor travels the swing's displacement (the stride length) along a
  minimum-jerk profile from shortly before toe-off to shortly after heel strike,
  lifted by a smooth clearance bump;
* in turning swings the foot yaws by the swing's heading change.

Accelerometer = specific force (trajectory acceleration plus gravity) rotated into
the sensor frame (x anterior, y left, z up; g), gyroscope = body angular rate (deg/s).
Between swings the foot is still: acc = (0, 0, 1) g, gyro = 0, plus white noise.
"""

from __future__ import annotations

import numpy as np

from simulator.consts import GRAVITY_M_S2


def _q(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-jerk 0 -> 1 and its first two derivatives."""
    x = np.clip(x, 0.0, 1.0)
    x2 = x * x
    return x2 * x * (10 - 15 * x + 6 * x2), 30 * x2 * (1 - x) ** 2, 60 * x * (1 - x) * (1 - 2 * x)


def foot_imu(t: np.ndarray, arr: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free ``(acc_g, gyro_dps)`` of one foot, each ``(n, 3)``."""
    n = len(t)
    acc = np.zeros((n, 3))
    acc[:, 2] = 1.0
    gyro = np.zeros((n, 3))
    ho = arr["sw_ho"]
    if not len(ho):
        return acc, gyro
    k = np.searchsorted(ho, t, side="right") - 1
    kc = np.clip(k, 0, None)
    idx = np.flatnonzero((k >= 0) & (t < arr["sw_ff"][kc]))
    kk = kc[idx]
    tt = t[idx]
    t_ho, t_to, t_hs, t_ff = (arr[f"sw_{x}"][kk] for x in ("ho", "to", "hs", "ff"))
    th_to, th_hs = np.radians(arr["sw_th_to"][kk]), np.radians(arr["sw_th_hs"][kk])
    disp, dpsi, clr = arr["sw_d"][kk], arr["sw_dpsi"][kk], arr["sw_clr"][kk]

    # pitch: three minimum-jerk segments through (ho, 0), (to, th_to), (hs, th_hs), (ff, 0)
    seg1, seg3 = tt < t_to, tt >= t_hs
    seg2 = ~seg1 & ~seg3
    start = np.select([seg1, seg2], [t_ho, t_to], t_hs)
    end = np.select([seg1, seg2], [t_to, t_hs], t_ff)
    th0 = np.select([seg1, seg2], [0.0 * th_to, th_to], th_hs)
    th1 = np.select([seg1, seg2], [th_to, th_hs], 0.0 * th_hs)
    dur = np.maximum(end - start, 1e-9)
    q, dq, _ = _q((tt - start) / dur)
    theta = th0 + (th1 - th0) * q
    theta_dot = (th1 - th0) * dq / dur

    # translation: minimum-jerk displacement plus clearance bump, same window
    h0 = t_to - 0.25 * (t_to - t_ho)
    h1 = t_hs + 0.30 * (t_ff - t_hs)
    hdur = h1 - h0
    tau = np.clip((tt - h0) / hdur, 0.0, 1.0)
    _, _, ddq = _q(tau)
    s_dd = disp * ddq / hdur**2
    z_dd = clr * 64 * 6 * tau * (1 - tau) * ((1 - 2 * tau) ** 2 - tau * (1 - tau)) / hdur**2

    # yaw during the swing proper, relative to the heading at heel-off
    ydur = np.maximum(t_hs - t_to, 1e-9)
    yq, ydq, _ = _q((tt - t_to) / ydur)
    psi = dpsi * yq
    psi_dot = dpsi * ydq / ydur
    beta = dpsi / 2  # direction of travel: half-way through the heading change

    f_x = s_dd * np.cos(beta)
    f_y = s_dd * np.sin(beta)
    f_z = z_dd + GRAVITY_M_S2
    cp, sp = np.cos(psi), np.sin(psi)
    v_x, v_y = cp * f_x + sp * f_y, -sp * f_x + cp * f_y
    ct, st = np.cos(theta), np.sin(theta)
    acc[idx, 0] = (ct * v_x - st * f_z) / GRAVITY_M_S2
    acc[idx, 1] = v_y / GRAVITY_M_S2
    acc[idx, 2] = (st * v_x + ct * f_z) / GRAVITY_M_S2
    gyro[idx, 0] = np.degrees(-st * psi_dot)
    gyro[idx, 1] = np.degrees(theta_dot)
    gyro[idx, 2] = np.degrees(ct * psi_dot)
    return acc, gyro
