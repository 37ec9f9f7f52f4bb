"""Issue 19, round 3, question 1 (docs/validation.md): how well can ANY persistence detector on one series do
under the suite's own day model, while keeping its own false-flag rate <= 2 % of stable patient-weeks?

Monte Carlo of the series alone (no gait simulation), with the timing of :mod:`simulator.validate19`: baseline =
the first 10 valid days, 10 % of days not walked, onset day 14, found if a raise falls on days 14-27, the stable
arm monitored to day 42 in the suite's 7-day weeks (:func:`simulator.validate19.score`: weeks start the day after
the 10th valid day; a week is false if a raise falls in it).

Series (values in the direction heel pain moves them, so compensation is *up*):

* ``slowing``: minus the log cadence. Day = N(0, 0.02) plus, on 15 % of days, a speed day (speed x0.90 or x1.10,
  half each; cadence by the square root, i.e. -5.3 % / +4.8 %). Slower arm: cadence x sqrt(0.92) (-4.1 %) from
  the onset (Phillips & McClinton 2017; Cervera-Garvi et al. 2023: heel pain lowers speed and cadence).
  ``slowing-sim``: the same with each patient's cadence CV drawn from 1-2.5 % as in :mod:`simulator.cohort`.
* ``lateral``: Gaussian days (SD 1) and a shift of ``delta`` day SDs from the onset (heel pain moves load
  laterally: Sullivan et al. 2015), ``delta`` fixed or drawn log-normal (median 1.56, 10-90 % 0.90-2.74: the
  simulated lateral-forefoot share, round 2). ``--feet 2``: one series per foot, only one changed, the false
  flags of both counted.

Detectors (raise = the alarm switching on; a CUSUM restarts at 0 after a raise):

* ``mean m``: mean of the last m valid monitored days minus the baseline mean, over sd sqrt(1/m + 1/n), beyond c;
* ``cusum k``: one-sided CUSUM of z = (x - mean) / (sd sqrt(1 + 1/n)), each day capped at 3.5, over h.

``sd``: ``known`` (the true day SD of the mixture: the idealised bound) or ``estimated`` (the 10 baseline days'
sample SD shrunk toward the detector's prior with 4 days' weight, as :class:`processing.detection.CompensationDetector`).
c and h are calibrated on the stable arm to the largest power with a false-week rate <= ``--fp`` (default 2 %).

Run: ``PYTHONPATH=. .venv/bin/python scripts/detection_power_bound.py`` (about 30 s).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

ONSET, WITHIN, STABLE_DAYS, CHANGE_DAYS, BASE_N = 14, 14, 42, 28, 10
MISSING, SPEED_DAYS, CLIP = 0.10, 0.15, 3.5
PRIOR_WEIGHT = 4.0
#: the detector's cadence SD prior, 2.5 steps/min, at the cohort's mean cadence 105 steps/min (log units)
CADENCE_PRIOR = 2.5 / 105.0
SLOW_DAY, FAST_DAY = 0.5 * math.log(0.90), 0.5 * math.log(1.10)
SLOWER = -0.5 * math.log(0.92)  # minus log cadence: up by 0.0417


def series(kind: str, n: int, days: int, effect: float | np.ndarray, rng: np.random.Generator):
    """(values, valid) of ``n`` patients x ``days``; the change (``effect``, in the series' units) from ONSET."""
    valid = rng.uniform(size=(n, days)) >= MISSING
    if kind.startswith("slowing"):
        cv = np.full((n, 1), 0.02) if kind == "slowing" else rng.uniform(0.010, 0.025, size=(n, 1))
        u = rng.uniform(size=(n, days))
        speed = np.where(u < SPEED_DAYS / 2, SLOW_DAY, np.where(u < SPEED_DAYS, FAST_DAY, 0.0))
        x = -(cv * rng.normal(size=(n, days)) + speed)
    else:
        x = rng.normal(size=(n, days))
    x[:, ONSET:] += np.reshape(effect, (-1, 1)) if np.ndim(effect) else effect
    return x, valid


def true_sd(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "lateral":
        return np.ones(n)
    cv = np.full(n, 0.02) if kind == "slowing" else rng.uniform(0.010, 0.025, size=n)
    var_speed = SPEED_DAYS / 2 * (SLOW_DAY ** 2 + FAST_DAY ** 2) - (SPEED_DAYS / 2 * (SLOW_DAY + FAST_DAY)) ** 2
    return np.sqrt(cv ** 2 + var_speed)


def prepared(x, valid, sd_mode: str, prior: float, sd_true: np.ndarray):
    """Baseline and the monitored days packed to the front: (y packed, day packed, count, base mean, sd, base_end)."""
    days = x.shape[1]
    cum = np.cumsum(valid, axis=1)
    base = valid & (cum <= BASE_N)
    ok = cum[:, -1] >= BASE_N
    base_end = np.argmax(cum >= BASE_N, axis=1)
    xb = np.where(base, x, np.nan)
    mean = np.nanmean(xb, axis=1)
    s = np.nanstd(xb, axis=1, ddof=1)
    if sd_mode == "known":
        sd = sd_true
    else:
        sd = np.sqrt(((BASE_N - 1) * s ** 2 + PRIOR_WEIGHT * prior ** 2) / (BASE_N - 1 + PRIOR_WEIGHT))
    monitored = valid & (np.arange(days)[None, :] > base_end[:, None]) & ok[:, None]
    order = np.argsort(~monitored, axis=1, kind="stable")
    count = monitored.sum(axis=1)
    y = np.take_along_axis(x, order, axis=1)
    y = np.where(np.arange(days)[None, :] < count[:, None], y, np.nan)
    return y, order, count, mean, sd, base_end, ok


def raises_mean(p, m: int, c: float) -> np.ndarray:
    """Raise mask over packed positions for the windowed-mean rule."""
    y, _, _, mean, sd, _, _ = p
    n, d = y.shape
    cs = np.concatenate([np.zeros((n, 1)), np.nancumsum(np.nan_to_num(y), axis=1)], axis=1)
    w = np.full((n, d), np.nan)
    w[:, m - 1:] = (cs[:, m:] - cs[:, :-m]) / m
    w = np.where(np.isnan(y), np.nan, w)
    stat = (w - mean[:, None]) / (sd[:, None] * math.sqrt(1.0 / m + 1.0 / BASE_N))
    alarm = stat > c
    prev = np.concatenate([np.zeros((n, 1), bool), alarm[:, :-1]], axis=1)
    return alarm & ~prev


def raises_cusum(p, k: float, h: float) -> np.ndarray:
    y, _, _, mean, sd, _, _ = p
    n, d = y.shape
    z = np.minimum((y - mean[:, None]) / (sd[:, None] * math.sqrt(1.0 + 1.0 / BASE_N)), CLIP)
    s = np.zeros(n)
    out = np.zeros((n, d), bool)
    for j in range(d):
        zj = z[:, j]
        live = np.isfinite(zj)
        s = np.where(live, np.maximum(0.0, s + np.nan_to_num(zj) - k), s)
        hit = live & (s > h)
        out[:, j] = hit
        s = np.where(hit, 0.0, s)
    return out


def false_week_rate(p, raised: np.ndarray) -> float:
    _, order, _, _, _, base_end, ok = p
    day = np.where(raised, order, -1)
    weeks = fw = 0
    for w in range(STABLE_DAYS // 7 + 1):
        a = base_end + 1 + 7 * w
        b = a + 7
        inside = (b <= STABLE_DAYS) & ok
        weeks += int(inside.sum())
        fw += int((inside & ((day >= a[:, None]) & (day < b[:, None])).any(axis=1)).sum())
    return fw / weeks


def found_rate(p, raised: np.ndarray) -> float:
    _, order, _, _, _, _, ok = p
    day = np.where(raised, order, -1)
    return float(((day >= ONSET) & (day < ONSET + WITHIN)).any(axis=1)[ok].mean())


def calibrate(stable, changed, family: str, param: float, lo: float, hi: float, fp: float, feet: int):
    """The smallest threshold with a false-week rate <= fp (bisection: the rate falls as the threshold rises),
    and the power there: (threshold, false-week rate, found share)."""
    fn = raises_mean if family == "mean" else raises_cusum
    arg = int(param) if family == "mean" else param

    def rate(thr: float) -> float:
        r = [fn(s, arg, thr) for s in stable]
        return false_week_rate(stable[0], r[0] | r[1] if feet == 2 else r[0])

    for _ in range(14):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if rate(mid) <= fp else (mid, hi)
    return float(hi), rate(hi), found_rate(changed, fn(changed, arg, hi))


def run(kind: str, sd_mode: str, effect, *, n: int, seed: int, fp: float, feet: int, prior: float):
    rng = np.random.default_rng(seed)
    stable = []
    sd_stable = true_sd(kind, n, rng)
    x, valid = series(kind, n, STABLE_DAYS, 0.0, rng)
    stable.append(prepared(x, valid, sd_mode, prior, sd_stable))
    if feet == 2:  # a second foot: same days walked, its own noise
        x2 = rng.normal(size=x.shape)
        stable.append(prepared(x2, valid, sd_mode, prior, sd_stable))
    sd_changed = true_sd(kind, n, rng)
    eff = effect(n, rng) if callable(effect) else effect
    xc, vc = series(kind, n, CHANGE_DAYS, eff, rng)
    changed = prepared(xc, vc, sd_mode, prior, sd_changed)
    rows = [("mean", m, *calibrate(stable, changed, "mean", m, 0.0, 8.0, fp, feet)) for m in range(3, 15)]
    rows += [("cusum", k, *calibrate(stable, changed, "cusum", k, 0.0, 40.0, fp, feet)) for k in (0.25, 0.5, 0.75, 1.0)]
    return rows


def lognormal(n: int, rng: np.random.Generator) -> np.ndarray:
    """Shifts of the simulated lateral-forefoot share (round 2): median 1.56, 10-90 % 0.90-2.74 day SDs."""
    return 1.56 * np.exp(rng.normal(0.0, (math.log(2.74) - math.log(0.90)) / (2 * 1.2816), n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=12000, help="patients per arm and scenario")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--fp", type=float, default=0.02)
    args = ap.parse_args()
    scenarios = [
        ("slowing", "known", SLOWER, 1, CADENCE_PRIOR, "slower 8 %: cadence -4.1 %, day model CV 2 % + speed days"),
        ("slowing", "estimated", SLOWER, 1, CADENCE_PRIOR, "same, SD estimated from 10 days (prior 2.5 spm)"),
        ("slowing-sim", "estimated", SLOWER, 1, CADENCE_PRIOR, "same, cadence CV 1-2.5 % per patient (simulator)"),
        ("lateral", "known", 1.0, 1, 1.0, "lateral, shift 1.0 SD"),
        ("lateral", "known", 1.3, 1, 1.0, "lateral, shift 1.3 SD"),
        ("lateral", "known", 1.6, 1, 1.0, "lateral, shift 1.6 SD"),
        ("lateral", "known", lognormal, 1, 1.0, "lateral, shift log-normal (median 1.56, 10-90 % 0.90-2.74)"),
        ("lateral", "estimated", lognormal, 1, 1.0, "same, SD estimated from 10 days (prior = true SD)"),
        ("lateral", "known", lognormal, 2, 1.0, "same shifts, two feet watched (known SD)"),
        ("lateral", "estimated", lognormal, 2, 1.0, "same shifts, two feet watched (SD estimated)"),
    ]
    sd_slow = float(true_sd("slowing", 1, np.random.default_rng(0))[0])
    print(f"slowing series: day SD {100 * sd_slow:.2f} % of cadence, change {100 * SLOWER:.2f} % = "
          f"{SLOWER / sd_slow:.2f} day SDs; false-week budget {100 * args.fp:.1f} %; {args.n} patients per arm")
    for i, (kind, sd_mode, effect, feet, prior, label) in enumerate(scenarios):
        rows = run(kind, sd_mode, effect, n=args.n, seed=args.seed + i, fp=args.fp, feet=feet, prior=prior)
        best = max(rows, key=lambda r: r[4])
        print(f"\n{label} [{sd_mode} SD, {feet} series]: best {best[0]} {best[1]}: found {100 * best[4]:.1f} % "
              f"(threshold {best[2]:.3g}, false weeks {100 * best[3]:.2f} %)")
        print("  " + "  ".join(f"{f}{'' if f == 'cusum' else ' m='}{p:g}: {100 * fd:.0f} %" for f, p, _, _, fd in rows))


if __name__ == "__main__":
    main()
