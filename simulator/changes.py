"""Known changes applied to a recording (real or simulated), for validating compensation detection on walks
whose truth is known: a different walking speed (time-stretching), and load moved between the sensors of one
foot (medial -> lateral, heel -> forefoot) chosen by their place in the sensor layout.

Load transfer, per foot contact: ``fraction`` of every source sensor's value is taken off it at every sample,
and the contact's whole removed load (its force-time integral) is given to the destination sensors over the
same contact, in proportion to what each carries at each sample. So each contact's total impulse and timing
are kept, the source's share of the impulse falls by ``fraction`` and the destination's curves keep their
shape (a heel-to-forefoot transfer puts nothing under the forefoot at heel strike). A contact is a run of
samples whose foot total exceeds 5 % of the recording's 99th percentile.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from insole_common.codec import Side
from insole_common.errors import ValidationError
from insole_common.recording import Recording


def stretch_time(recording: Recording, factor: float) -> Recording:
    """The recording walked ``factor`` times slower (factor > 1: every duration longer; cadence / factor).
    The samples are kept and relabelled with a sample rate ``/ factor``."""
    if not 0.5 <= factor <= 2.0:
        raise ValidationError(f"time-stretch factor {factor} is outside 0.5..2", reason="bad_parameter")
    feet = {s: replace(f, sample_rate_hz=f.sample_rate_hz / factor, t0_s=f.t0_s * factor)
            for s, f in recording.feet.items()}
    return Recording(feet=feet, source_format=recording.source_format, meta=dict(recording.meta))


def _masks(layout, kind: str) -> tuple[np.ndarray, np.ndarray]:
    ml, regions = np.asarray(layout.ml), np.asarray(layout.regions)
    if kind == "medial_to_lateral":
        return ml < 0, ml > 0
    if kind == "heel_to_forefoot":
        return regions == "heel", regions == "forefoot"
    raise ValidationError(f"unknown transfer {kind!r}", reason="bad_parameter")


def transfer_load(recording: Recording, *, side: Side, kind: str, fraction: float) -> Recording:
    """``fraction`` of the load of one foot's source sensors moved to its destination sensors (module docstring).
    ``kind``: ``medial_to_lateral`` (sensors medial / lateral of the foot's axis) or ``heel_to_forefoot``
    (the layout's heel / forefoot regions)."""
    foot = recording.feet.get(side)
    if foot is None or foot.layout is None:
        raise ValidationError(f"no {side} foot with a sensor layout to move load on", reason="bad_parameter")
    src, dst = _masks(foot.layout, kind)
    if not src.any() or not dst.any():
        raise ValidationError(f"layout {foot.layout.name} has no sensors for {kind}", reason="bad_parameter")
    p = np.array(foot.pressure, dtype=float)
    finite = np.isfinite(p).all(axis=1)
    total = np.where(finite, np.nansum(p, axis=1), 0.0)
    loaded = total > 0.05 * np.percentile(total[finite], 99) if finite.any() else np.zeros(len(p), bool)
    edges = np.flatnonzero(np.diff(np.r_[0, loaded.astype(np.int8), 0]))
    moved = fraction * np.clip(np.where(finite[:, None], p[:, src], 0.0), 0.0, None)
    to = np.clip(np.where(finite[:, None], p[:, dst], 0.0), 0.0, None)
    gain = np.zeros_like(to)
    for a, b in zip(edges[::2], edges[1::2], strict=True):  # loop over contacts
        w = to[a:b].sum()
        if w > 0:
            gain[a:b] = to[a:b] / w * moved[a:b].sum()
    moved[~loaded] = 0.0
    p[:, src] -= moved
    p[:, dst] += gain
    feet = dict(recording.feet)
    feet[side] = replace(foot, pressure=p)
    return Recording(feet=feet, source_format=recording.source_format, meta=dict(recording.meta))
